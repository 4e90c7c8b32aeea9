package virtqueue

import "testing"

// BenchmarkPopPush takes a two-descriptor chain off the ring and returns it
// as used, the per-request work of the queue.
func BenchmarkPopPush(b *testing.B) {
	d := newDriver(b, Config{EventIdx: true})
	d.setDesc(descAt, 0, bufAt, 64, descNext, 1)
	d.setDesc(descAt, 1, bufAt+0x100, 128, descWrite, 0)
	var c Chain
	b.ReportAllocs()
	for b.Loop() {
		d.offer(0)
		if ok, err := d.q.Pop(&c); !ok || err != nil || c.Err != nil {
			b.Fatalf("Pop = %v, %v, %v", ok, err, c.Err)
		}
		d.q.Push(&c, 16)
		d.q.ArmNotify()
	}
}

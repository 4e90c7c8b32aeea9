package xattrmap

import "testing"

var (
	benchSink  string
	benchBytes []byte
)

// benchMap is the usual "remap one namespace, pass the rest" map: a name
// that passes unchanged goes through three rules.
var benchMap = MustParse(":map:trusted.:user.virtiofs.:")

func BenchmarkToHostUnchanged(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchSink, _ = benchMap.ToHost("user.mime_type")
	}
}

func BenchmarkToHostPrefixed(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchSink, _ = benchMap.ToHost("trusted.overlay.opaque")
	}
}

func BenchmarkAppendHostPrefixed(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 256)
	for b.Loop() {
		benchBytes, _ = benchMap.AppendHost(buf[:0], "trusted.overlay.opaque")
	}
}

func BenchmarkToHostDenied(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, err := benchMap.ToHost("user.virtiofs.trusted.x")
		if err == nil {
			b.Fatal("not denied")
		}
	}
}

func BenchmarkToGuest(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchSink, _ = benchMap.ToGuest("user.virtiofs.trusted.overlay.opaque")
	}
}

func BenchmarkFilterList(b *testing.B) {
	list := []byte("user.mime_type\x00security.selinux\x00user.virtiofs.trusted.overlay.opaque\x00" +
		"trusted.overlay.origin\x00system.posix_acl_access\x00user.xdg.origin.url\x00" +
		"security.capability\x00user.virtiofs.trusted.overlay.redirect\x00")
	work := make([]byte, len(list))
	b.SetBytes(int64(len(list)))
	b.ReportAllocs()
	for b.Loop() {
		copy(work, list)
		benchBytes, _ = benchMap.FilterList(work)
	}
}

func BenchmarkParse(b *testing.B) {
	const text = "/prefix/all/trusted./user.virtiofs./ /bad/server//trusted./ /bad/client/user.virtiofs.// /ok/all///"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(text); err != nil {
			b.Fatal(err)
		}
	}
}

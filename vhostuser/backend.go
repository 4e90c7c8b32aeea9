package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/guestmem"
	"github.com/ferryfs/ferryfs/internal/rawsys"
	"github.com/ferryfs/ferryfs/internal/warnlimit"
	"github.com/ferryfs/ferryfs/virtqueue"
)

// Options configures a Backend.
type Options struct {
	// Workers is how many goroutines serve chains concurrently. 0 serves
	// every chain on the kick poller that takes it off its ring, one after
	// the other, as virtiofsd serves requests with --thread-pool-size=0
	// (its default): no hand-over between threads, which costs a guest
	// that sends one request at a time more than it gains it.
	Workers int
	// Logger receives the back-end's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Backend serves one vhost-user connection for a Device.
type Backend struct {
	dev  Device
	opts Options
	log  *slog.Logger
	conn *conn

	features    uint64 // acknowledged by SET_FEATURES
	protocol    uint64 // acknowledged by SET_PROTOCOL_FEATURES
	gotProtocol bool
	mem         guestmem.Table
	// dirtyLog is the log SET_LOG_BASE mapped.
	dirtyLog    *guestmem.DirtyLog
	vrings      []*vring
	poller      *kickPoller
	transfer    *stateTransfer // the last device state transfer
	jobs        chan *job
	jobPool     sync.Pool
	workersDone sync.WaitGroup
	chainWarn   warnlimit.Limiter
}

// job is one chain on its way to a worker.
type job struct {
	ring  *vring
	chain virtqueue.Chain
}

// New returns a back-end for dev.
func New(dev Device, opts Options) *Backend {
	opts.Workers = max(opts.Workers, 0)
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Backend{dev: dev, opts: opts, log: log}
	b.jobPool.New = func() any { return new(job) }
	for i := 0; i < dev.Queues(); i++ {
		b.vrings = append(b.vrings, newVring(i, log))
	}
	return b
}

// offeredFeatures are the virtio features we offer.
func (b *Backend) offeredFeatures() uint64 {
	return FeatureVersion1 | FeatureIndirectDesc | FeatureEventIdx | FeatureProtocolFeatures |
		FeatureNotifyOnEmpty | FeatureLogAll | b.dev.Features()
}

// offeredProtocol are the protocol features we offer.
func (b *Backend) offeredProtocol() uint64 {
	p := uint64(ProtocolMQ | ProtocolReplyAck | ProtocolConfigureMemSlots | ProtocolResetDevice | ProtocolLogShmfd)
	if b.dev.Config() != nil {
		p |= ProtocolConfig
	}
	if _, ok := b.dev.(StateDevice); ok {
		p |= ProtocolDeviceState
	}
	return p
}

// Serve handles the connection on fd (a connected unix stream socket, which
// Serve closes) until the front-end disconnects, which returns nil, or
// breaks the protocol, which returns an error saying how. Either way every
// ring is stopped and the guest memory unmapped before it returns.
func (b *Backend) Serve(fd int) error {
	// Starting a ring reads guest memory (see dispatchMessage).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	c, err := newConn(fd)
	if err != nil {
		return err
	}
	b.conn = c
	if b.poller, err = startPoller(b); err != nil {
		c.close()
		return fmt.Errorf("vhost-user: starting the kick poller: %w", err)
	}
	b.jobs = make(chan *job, 4*b.opts.Workers) // unbuffered and unused without workers
	rawsys.AddProcs(b.opts.Workers)
	for i := 0; i < b.opts.Workers; i++ {
		b.workersDone.Add(1)
		go b.worker()
	}
	defer func() {
		for _, v := range b.vrings {
			v.stop()
			v.closeFDs()
		}
		b.poller.close()
		// Closed before the transfer is waited for: a CHECK_DEVICE_STATE
		// answer it may be writing fails instead of blocking on a
		// front-end that no longer reads.
		c.close()
		b.cancelTransfer("the connection ended")
		close(b.jobs)
		b.workersDone.Wait()
		rawsys.AddProcs(-b.opts.Workers)
		b.mem.Store(nil).Unmap()
		b.dirtyLog.Unmap()
	}()
	for {
		m, err := b.conn.read()
		if errors.Is(err, errClosed) {
			b.log.Info("front-end disconnected")
			return nil
		}
		if err != nil {
			return fmt.Errorf("vhost-user: %w", err)
		}
		if err := b.handle(m); err != nil {
			return fmt.Errorf("vhost-user: %w", err)
		}
	}
}

func (b *Backend) worker() {
	defer b.workersDone.Done()
	// A chain's buffers and the dirty log are guest-controlled mappings:
	// a fault while serving breaks that chain's ring (see serveJobs).
	debug.SetPanicOnFault(true)
	for b.serveJobs() {
	}
}

// serveJobs serves jobs until the channel closes, which returns false, or
// until a memory fault, which breaks the ring of the job that faulted and
// returns true. The recovery is set up once per fault, not per job.
func (b *Backend) serveJobs() (more bool) {
	var cur *job
	defer func() {
		if cur == nil {
			return
		}
		r := recover()
		err := guestmem.AsFault(r)
		if err == nil {
			panic(r)
		}
		cur.ring.fail(err)
		cur.ring.inflight.Done()
		more = true
	}()
	for j := range b.jobs {
		cur = j
		b.serve(j)
		cur = nil
	}
	return false
}

// serve has the device serve a chain a worker took and returns it to the
// driver.
func (b *Backend) serve(j *job) {
	v := j.ring
	b.serveChain(v, &j.chain)
	v.inflight.Done()
	b.putJob(j)
}

// serveChain has the device serve c and returns it to the driver.
func (b *Backend) serveChain(v *vring, c *virtqueue.Chain) {
	n := b.dev.Serve(v.index, c)
	if v.q.Push(c, n) {
		v.signal()
	}
}

func (b *Backend) getJob(v *vring) *job {
	j := b.jobPool.Get().(*job)
	j.ring = v
	return j
}

func (b *Backend) putJob(j *job) {
	j.ring = nil
	b.jobPool.Put(j)
}

func (b *Backend) warnChain(queue int, err error) {
	if ok, suppressed := b.chainWarn.Allow(time.Now()); ok {
		b.log.Warn("refused a malformed descriptor chain", "queue", queue, "err", err, "suppressed", suppressed)
	}
}

// requestError is a failed request that leaves the connection usable: the
// front-end hears of it through REPLY_ACK when it asked, otherwise it is
// only logged.
type requestError struct{ err error }

func (e requestError) Error() string { return e.err.Error() }
func (e requestError) Unwrap() error { return e.err }

func reqErr(format string, args ...any) error { return requestError{fmt.Errorf(format, args...)} }

// handle serves one message. A returned error ends the connection.
func (b *Backend) handle(m *message) error {
	b.log.Debug("vhost-user message", "req", m.req.String(), "size", len(m.payload), "fds", len(m.fds))
	replied, err := b.dispatchMessage(m)
	closeFDs(m.fds) // whatever dispatch did not keep (it sets kept ones to -1)
	var rerr requestError
	if errors.As(err, &rerr) {
		b.log.Warn("vhost-user request failed", "req", m.req.String(), "err", rerr.err)
	} else if err != nil {
		return fmt.Errorf("%v: %w", m.req, err)
	}
	if m.needReply() && b.protocol&ProtocolReplyAck != 0 && !replied {
		var status uint64
		if err != nil {
			status = 1
		}
		return b.conn.replyU64(m.req, status)
	}
	return nil
}

// takeFD removes the one descriptor m carries from m.fds and returns it.
func takeFD(m *message) (int, error) {
	if len(m.fds) != 1 {
		return -1, fmt.Errorf("%d file descriptors, want 1", len(m.fds))
	}
	fd := m.fds[0]
	m.fds = nil
	return fd, nil
}

// ring returns the ring an index names.
func (b *Backend) ring(index uint32) (*vring, error) {
	if index >= uint32(len(b.vrings)) {
		return nil, fmt.Errorf("queue index %d out of range (%d queues)", index, len(b.vrings))
	}
	return b.vrings[index], nil
}

// dispatchMessage is dispatch, with a memory fault (starting a ring reads
// guest memory, whose file the front-end may have shrunk) turned into an
// error that ends the connection.
func (b *Backend) dispatchMessage(m *message) (replied bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			ferr := guestmem.AsFault(r)
			if ferr == nil {
				panic(r)
			}
			replied, err = false, ferr
		}
	}()
	return b.dispatch(m)
}

// dispatch serves m and reports whether it already sent the reply.
func (b *Backend) dispatch(m *message) (replied bool, err error) {
	switch m.req {
	case GetFeatures:
		return true, b.conn.replyU64(m.req, b.offeredFeatures())
	case SetFeatures:
		f, err := m.u64()
		if err != nil {
			return false, err
		}
		if extra := f &^ b.offeredFeatures(); extra != 0 {
			return false, fmt.Errorf("front-end acknowledged features %#x we did not offer", extra)
		}
		b.features = f
		if f&FeatureProtocolFeatures == 0 {
			// Without protocol features rings start enabled.
			for _, v := range b.vrings {
				v.enabled.Store(true)
			}
		}
		// VHOST_F_LOG_ALL set starts dirty logging, cleared (a
		// migration that ended or was cancelled) stops it.
		b.applyLogging()
		return false, nil
	case SetLogBase:
		return b.setLogBase(m)
	case GetProtocolFeatures:
		return true, b.conn.replyU64(m.req, b.offeredProtocol())
	case SetProtocolFeatures:
		p, err := m.u64()
		if err != nil {
			return false, err
		}
		if extra := p &^ b.offeredProtocol(); extra != 0 {
			return false, fmt.Errorf("front-end acknowledged protocol features %#x we did not offer", extra)
		}
		b.protocol, b.gotProtocol = p, true
		return false, nil
	case SetOwner:
		return false, nil
	case ResetOwner, ResetDevice:
		b.reset()
		return false, nil
	case GetQueueNum:
		return true, b.conn.replyU64(m.req, uint64(len(b.vrings)))
	case GetMaxMemSlots:
		return true, b.conn.replyU64(m.req, maxMemSlots)
	case SetMemTable:
		return false, b.setMemTable(m)
	case AddMemReg:
		return false, b.addMemReg(m)
	case RemMemReg:
		return false, b.remMemReg(m)
	case SetVringNum:
		return false, b.setVringNum(m)
	case SetVringAddr:
		return false, b.setVringAddr(m)
	case SetVringBase:
		return false, b.setVringBase(m)
	case GetVringBase:
		return true, b.getVringBase(m)
	case SetVringKick, SetVringCall, SetVringErr:
		return false, b.setVringFD(m)
	case SetVringEnable:
		index, num, err := m.vringState()
		if err != nil {
			return false, err
		}
		v, err := b.ring(index)
		if err != nil {
			return false, err
		}
		if num > 1 {
			return false, fmt.Errorf("enable value %d", num)
		}
		v.enabled.Store(num == 1)
		b.poller.poke(v)
		return false, nil
	case GetConfig:
		return true, b.getConfig(m)
	case SetDeviceStateFD:
		return true, b.setDeviceStateFD(m)
	case CheckDeviceState:
		return true, b.checkDeviceState(m) // answered now or when the transfer ends
	case SetConfig:
		return false, reqErr("the device's configuration space is read-only")
	default:
		return false, fmt.Errorf("unsupported message")
	}
}

// reset stops every ring and drops the device's state.
func (b *Backend) reset() {
	b.cancelTransfer("the device was reset")
	for _, v := range b.vrings {
		v.stop()
		v.closeFDs()
		v.num, v.addrSet, v.base = 0, false, 0
		v.enabled.Store(b.features&FeatureProtocolFeatures == 0)
	}
	b.dev.Reset()
}

// replaceMemory installs a new memory table. Running rings point into the
// old one, so they stop first and restart on the new table where they
// left off; the old mappings go once nothing uses them.
func (b *Backend) replaceMemory(build func(old *guestmem.Memory) (*guestmem.Memory, func(), error)) error {
	var running []*vring
	for _, v := range b.vrings {
		if v.running() {
			v.stop()
			running = append(running, v)
		}
	}
	old := b.mem.Load()
	mem, cleanup, err := build(old)
	if err == nil {
		b.mem.Store(mem)
		if cleanup != nil {
			cleanup()
		}
	}
	cur := b.mem.Load()
	for _, v := range running {
		if serr := v.start(b, cur); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

func specsFrom(rs []region, fds []int) []guestmem.RegionSpec {
	specs := make([]guestmem.RegionSpec, len(rs))
	for i, r := range rs {
		specs[i] = guestmem.RegionSpec{GuestAddr: r.guestAddr, Size: r.size, UserAddr: r.userAddr, MmapOffset: r.mmapOffset, FD: fds[i]}
	}
	return specs
}

func (b *Backend) setMemTable(m *message) error {
	rs, err := m.memTable()
	if err != nil {
		return err
	}
	fds := m.fds
	m.fds = nil // guestmem.Map owns them now
	return b.replaceMemory(func(old *guestmem.Memory) (*guestmem.Memory, func(), error) {
		mem, err := guestmem.Map(specsFrom(rs, fds))
		if err != nil {
			return nil, nil, err
		}
		return mem, old.Unmap, nil
	})
}

func (b *Backend) addMemReg(m *message) error {
	r, err := m.singleRegion()
	if err != nil {
		return err
	}
	fd, err := takeFD(m)
	if err != nil {
		return err
	}
	return b.replaceMemory(func(old *guestmem.Memory) (*guestmem.Memory, func(), error) {
		spec := specsFrom([]region{r}, []int{fd})[0]
		if old == nil {
			mem, err := guestmem.Map([]guestmem.RegionSpec{spec})
			return mem, nil, err
		}
		if old.Regions() >= maxMemSlots {
			unix.Close(fd)
			return nil, nil, fmt.Errorf("more than %d memory regions", maxMemSlots)
		}
		mem, err := old.With(spec)
		return mem, nil, err
	})
}

func (b *Backend) remMemReg(m *message) error {
	r, err := m.singleRegion()
	if err != nil {
		return err
	}
	// A descriptor sent along is closed unused (the spec allows one for
	// compatibility); handle closes whatever is left in m.fds.
	return b.replaceMemory(func(old *guestmem.Memory) (*guestmem.Memory, func(), error) {
		if old == nil {
			return nil, nil, fmt.Errorf("no memory table")
		}
		mem, gone, err := old.Without(guestmem.RegionSpec{GuestAddr: r.guestAddr, Size: r.size, UserAddr: r.userAddr})
		if err != nil {
			return nil, nil, err
		}
		return mem, gone.Unmap, nil
	})
}

func (b *Backend) stoppedRing(m *message) (*vring, uint32, error) {
	index, num, err := m.vringState()
	if err != nil {
		return nil, 0, err
	}
	v, err := b.ring(index)
	if err != nil {
		return nil, 0, err
	}
	if v.running() {
		return nil, 0, fmt.Errorf("queue %d is running", index)
	}
	return v, num, nil
}

func (b *Backend) setVringNum(m *message) error {
	v, num, err := b.stoppedRing(m)
	if err != nil {
		return err
	}
	if num == 0 || num > virtqueue.MaxSize || num&(num-1) != 0 {
		return fmt.Errorf("queue %d size %d is not a power of 2 up to %d", v.index, num, virtqueue.MaxSize)
	}
	v.num = num
	return nil
}

func (b *Backend) setVringBase(m *message) error {
	v, num, err := b.stoppedRing(m)
	if err != nil {
		return err
	}
	if num > 0xffff {
		return fmt.Errorf("queue %d base %d out of range", v.index, num)
	}
	v.base = uint16(num)
	return nil
}

func (b *Backend) setVringAddr(m *message) error {
	a, err := m.vringAddr()
	if err != nil {
		return err
	}
	v, err := b.ring(a.index)
	if err != nil {
		return err
	}
	if a.flags&^vringFLog != 0 {
		return fmt.Errorf("queue %d: unknown ring address flags %#x", a.index, a.flags)
	}
	wasRunning := v.running()
	v.stop()
	v.addr, v.addrSet = a, true
	if wasRunning {
		return v.start(b, b.mem.Load())
	}
	return nil
}

func (b *Backend) getVringBase(m *message) error {
	index, _, err := m.vringState()
	if err != nil {
		return err
	}
	v, err := b.ring(index)
	if err != nil {
		return err
	}
	// GET_VRING_BASE stops the ring: after the reply nothing more is
	// written to guest memory for it.
	v.stop()
	v.setKickFD(-1)
	var p [8]byte
	binary.LittleEndian.PutUint32(p[0:], index)
	binary.LittleEndian.PutUint32(p[4:], uint32(v.base))
	return b.conn.reply(m.req, p[:])
}

// vringFDInvalid is the "no descriptor" bit of SET_VRING_KICK/CALL/ERR.
const vringFDInvalid = 1 << 8

func (b *Backend) setVringFD(m *message) error {
	u, err := m.u64()
	if err != nil {
		return err
	}
	if u&^(vringFDInvalid|0xff) != 0 {
		return fmt.Errorf("payload %#x has unknown bits", u)
	}
	v, err := b.ring(uint32(u & 0xff))
	if err != nil {
		return err
	}
	fd := -1
	if u&vringFDInvalid == 0 {
		if fd, err = takeFD(m); err != nil {
			return err
		}
		if err := checkEventFD(fd); err != nil {
			unix.Close(fd)
			return fmt.Errorf("queue %d: %w", v.index, err)
		}
	} else if len(m.fds) != 0 {
		return fmt.Errorf("invalid-descriptor flag set but %d descriptors sent", len(m.fds))
	}
	switch m.req {
	case SetVringCall:
		// signal writes it with a raw system call, which must not block.
		if fd >= 0 {
			if err := unix.SetNonblock(fd, true); err != nil {
				unix.Close(fd)
				return fmt.Errorf("queue %d call descriptor: %w", v.index, err)
			}
		}
		v.setCall(fd)
		return nil
	case SetVringErr:
		// fail writes it with a raw system call, which must not block.
		if fd >= 0 {
			if err := unix.SetNonblock(fd, true); err != nil {
				unix.Close(fd)
				return fmt.Errorf("queue %d error descriptor: %w", v.index, err)
			}
		}
		v.setErr(fd)
		return nil
	}
	// SET_VRING_KICK (re)starts the ring.
	if fd < 0 {
		return fmt.Errorf("queue %d: polling instead of a kick descriptor is not supported", v.index)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("queue %d kick descriptor: %w", v.index, err)
	}
	v.stop()
	v.setKickFD(fd)
	mem := b.mem.Load()
	if mem == nil {
		return fmt.Errorf("queue %d kicked before a memory table", v.index)
	}
	return v.start(b, mem)
}

// checkEventFD refuses a kick, call or error descriptor that cannot be an
// eventfd.
// Eventfds are anonymous inodes, with no file type in their mode; a pipe,
// a device such as /dev/zero or a regular file would make a ring spin or
// block.
func checkEventFD(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("notification descriptor: %w", err)
	}
	if st.Mode&unix.S_IFMT != 0 {
		return fmt.Errorf("notification descriptor is not an eventfd (mode %#o)", st.Mode)
	}
	return nil
}

func (b *Backend) getConfig(m *message) error {
	offset, size, err := m.configSpace()
	if err != nil {
		return err
	}
	cfg := b.dev.Config()
	reply := make([]byte, 12+size)
	copy(reply, m.payload[:12])
	if cfg == nil || uint64(offset)+uint64(size) > uint64(len(cfg)) {
		// A zero-length payload tells the front-end the read failed.
		b.log.Warn("GET_CONFIG outside the configuration space", "offset", offset, "size", size)
		return b.conn.reply(m.req, nil)
	}
	copy(reply[12:], cfg[offset:offset+size])
	return b.conn.reply(m.req, reply)
}

// setLogBase maps the dirty log the front-end shares for a migration
// (SET_LOG_BASE with VHOST_USER_PROTOCOL_F_LOG_SHMFD) and answers, as that
// protocol feature requires, once it is in use.
func (b *Backend) setLogBase(m *message) (bool, error) {
	if b.protocol&ProtocolLogShmfd == 0 {
		return false, fmt.Errorf("SET_LOG_BASE without VHOST_USER_PROTOCOL_F_LOG_SHMFD")
	}
	size, offset, err := m.logBase()
	if err != nil {
		return false, err
	}
	fd, err := takeFD(m)
	if err != nil {
		return false, err
	}
	l, err := guestmem.MapDirtyLog(fd, size, offset)
	if err != nil {
		return false, err
	}
	// The log replaced may be being marked by the poller or a worker: stop
	// the running rings, so that it can go at once (a front-end repeating
	// SET_LOG_BASE would otherwise pile up mappings), and restart them on
	// the new log where they stopped, as a new memory table does.
	var running []*vring
	for _, v := range b.vrings {
		if v.running() {
			v.stop()
			running = append(running, v)
		}
	}
	b.dirtyLog.Unmap()
	b.dirtyLog = l
	mem := b.mem.Load()
	for _, v := range running {
		if err := v.start(b, mem); err != nil {
			return false, err
		}
	}
	b.log.Debug("dirty log mapped", "size", size)
	return true, b.conn.replyU64(m.req, 0)
}

// applyLogging gives every running ring the dirty log while VHOST_F_LOG_ALL
// is on, and takes it away otherwise.
func (b *Backend) applyLogging() {
	for _, v := range b.vrings {
		b.applyRingLogging(v)
	}
}

// applyRingLogging sets v's logging as applyLogging describes. Every byte
// written into guest memory from then on, the data of a reply and the used
// ring entry and index, is marked by the time its chain is returned, and
// GET_VRING_BASE waits for the chains in flight: the front-end's last copy
// of guest memory, after it stopped the rings, sees every mark.
func (b *Backend) applyRingLogging(v *vring) {
	if !v.running() {
		return
	}
	if b.features&FeatureLogAll == 0 || b.dirtyLog == nil {
		v.q.SetLog(nil)
		return
	}
	v.q.SetLog(&virtqueue.UsedLog{Log: b.dirtyLog, UsedAddr: v.addr.logGuestAdr, LogBuffer: true})
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Config is what an Agent needs.
type Config struct {
	// Host is the dom0 the agent works on; its Warn, when nil, is set to
	// log through the agent's warnings.
	Host   *assign.Host
	Policy *policy.Policy
	Log    zerolog.Logger
	// DryRun decides and logs, and changes nothing.
	DryRun bool
	// OnAudit, when set, hears every audit record (the replay timeline).
	OnAudit func(Audit)
	// OnStatus, when set, is given the status after each pass that
	// changed it (written to a file by the daemon).
	OnStatus func(Status)
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// NoWatches: the agent sets no store watches and does not watch
	// dom0's mounts, and whoever drives it calls Rescan after changing
	// domains (the replay does, so that its timeline does not depend on
	// when a watch event lands).
	NoWatches bool
	// Hooks runs the exec commands of the rules that decide (the daemon
	// sets it; a replay only simulates). HookTimeout bounds each run
	// (30 s when zero).
	Hooks       bool
	HookTimeout time.Duration
	// Mountinfo is where dom0's mounts are read, for the guard that keeps
	// a disk dom0 uses (mounts.Default when empty).
	Mountinfo string
}

// An Agent reconciles devices. Create it with New and run it with Run.
type Agent struct {
	cfg Config
	h   *assign.Host
	pol atomic.Pointer[policy.Policy]

	mu      sync.Mutex
	queue   []string           // busids, in arrival order
	why     map[string]Trigger // busid → what asked for the pass (queued ones)
	busy    bool
	changed chan struct{} // closed and replaced at each queue or busy change
	plugged map[string]uint64
	seq     uint64
	domains map[string][]uint32 // running domains by name (two share a name at times)
	status  map[string]Audit    // the last decision per device
	dirty   bool
	skipped []assign.Skipped // the controllers the last status said were skipped
	// cache holds every present device as last read: a pass reads its own
	// device again and takes the others from here, so one event does not
	// cost a scan of the whole bus. Full rescans refill it.
	cache      map[string]usbsysfs.Device
	cacheOrder []string // cache's busids in order; nil when to be made again
	// ports is where each busid was at the last look at the store.
	ports map[string]assign.Assignment
	// present holds, by busid, the devices plugged before the agent first
	// started since dom0 booted, as presentValue names them.
	present map[string]string
	// left is where departed devices were, by identity, for their replug.
	left map[string]leftPort
	// portGen counts setPort calls; touched is the count at each busid's
	// last one.
	portGen uint64
	touched map[string]uint64
	// looks are the second looks due shortly (lookLater), by busid.
	looks map[string]*time.Timer
	// probeLooks are the looks at devices the kernel was probing
	// (lookAfterProbe), by busid.
	probeLooks map[string]*time.Timer
	// retries: a failed pass is tried again after a delay that doubles
	// (by busid); the timers are stopped when Run ends.
	retries map[string]*retry
	// intents: attaches decided and not done yet (the worker's own).
	intents []intent
	// hold: the current pass's hold of its device's disks, until its
	// attach is queued (the worker's own).
	hold func()
	// seenAttached: busids seen at a port or in usbback since they were
	// plugged (forgotten when they leave).
	seenAttached map[string]bool
	// offered: busids whose interfaces without a driver were offered to
	// the kernel once since the agent last saw them attached (a driver
	// that matches none is not asked again at every pass).
	offered map[string]bool
	// ensured: domids whose declared controllers exist (or that had some)
	ensured map[uint32]bool
	// inert: root hubs whose interface_authorized_default the agent set
	// to 0 (authorization before probe).
	inert map[string]bool
	// refusedBy: devices usbback refused, by busid, for that plug.
	refusedBy map[string]refusal
	// openDisks: disks about to be passed that dom0 still had open, and
	// why (inventory.Busy), looked at again while their unmount ends.
	openDisks map[string]string
	// heldDisks: disks denied while device-mapper or md holds them,
	// looked at again every heldEvery (watchHeld); heldWoke wakes that.
	heldDisks map[string]bool
	heldWoke  chan struct{}
	// plugs: the address (devnum) of each device as a pass last saw it
	// present; the kernel gives each plug a new one. Not the cache's:
	// a rescan refills that before any pass looks.
	plugs map[string]int

	events, passes         atomic.Uint64
	overruns               atomic.Uint64
	refused                atomic.Uint64
	hooksRun, hooksDropped atomic.Uint64
	passStart              atomic.Int64                       // unix nanoseconds when the running pass began; 0 when idle
	beforePass             atomic.Pointer[func(busid string)] // a test's, run by the worker before each device's pass
	warn                   zerolog.Logger                     // rate-limited, for warnings and errors outside decisions
	hooks                  chan hookJob                       // rules' commands waiting to run
	mountsWoke             chan struct{}                      // one slot: dom0's mounts changed (watchMounts)
}

// Stats counts kernel events taken and passes made: a storm of events
// for one device costs one pass.
type Stats struct {
	Events uint64 `json:"events"`
	Passes uint64 `json:"passes"`
	// HooksRun counts the rules' commands run; HooksDropped those skipped
	// because hookQueue commands already waited.
	HooksRun     uint64 `json:"hooks_run"`
	HooksDropped uint64 `json:"hooks_dropped"`
	// Overruns counts the times the kernel dropped events and everything
	// was looked at again.
	Overruns uint64 `json:"overruns"`
	// Refused counts the kernel's events that failed validation, each
	// followed by a look at everything.
	Refused uint64 `json:"refused_events"`
}

// Stuck says a pass has run for longer than d (the watchdog stops being
// fed then, and systemd restarts the agent).
func (a *Agent) Stuck(d time.Duration) bool {
	t := a.passStart.Load()
	return t != 0 && time.Since(time.Unix(0, t)) > d
}

// Stats reads the counters.
func (a *Agent) Stats() Stats {
	return Stats{Events: a.events.Load(), Passes: a.passes.Load(), HooksRun: a.hooksRun.Load(), HooksDropped: a.hooksDropped.Load(), Overruns: a.overruns.Load(), Refused: a.refused.Load()}
}

// New makes an agent; nothing runs until Run.
func New(cfg Config) *Agent {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Mountinfo == "" {
		cfg.Mountinfo = mounts.Default
	}
	a := &Agent{cfg: cfg, h: cfg.Host, why: map[string]Trigger{}, changed: make(chan struct{}),
		plugged: map[string]uint64{}, domains: map[string][]uint32{}, status: map[string]Audit{}, cache: map[string]usbsysfs.Device{}, ports: map[string]assign.Assignment{}, present: map[string]string{}, left: map[string]leftPort{}, touched: map[string]uint64{}, looks: map[string]*time.Timer{}, probeLooks: map[string]*time.Timer{}, ensured: map[uint32]bool{}, seenAttached: map[string]bool{}, offered: map[string]bool{}, inert: map[string]bool{}, refusedBy: map[string]refusal{}, openDisks: map[string]string{}, heldDisks: map[string]bool{}, heldWoke: make(chan struct{}, 1), plugs: map[string]int{}, retries: map[string]*retry{}}
	// Warnings repeat in a storm; decisions (audit records) never are
	// sampled.
	burst := &zerolog.BurstSampler{Burst: 10, Period: time.Minute}
	a.warn = cfg.Log.Sample(zerolog.LevelSampler{WarnSampler: burst, ErrorSampler: burst})
	if cfg.Host != nil && cfg.Host.Warn == nil {
		// What the store held that the host's operations tolerated (a
		// controller skipped, a rollback that failed) is the agent's
		// to log: with no Warn it would be said nowhere. Not sampled:
		// the host says what every look finds again once only, and a
		// sampler that dropped it would drop it for good; the rest is
		// one line per failed operation, which is retried with backoff.
		log := cfg.Log
		cfg.Host.Warn = func(msg string) { log.Warn().Msg(msg) }
	}
	a.pol.Store(cfg.Policy)
	a.hooks = make(chan hookJob, hookQueue)
	a.mountsWoke = make(chan struct{}, 1)
	return a
}

// Policy is the policy in force.
func (a *Agent) Policy() *policy.Policy { return a.pol.Load() }

func (a *Agent) broadcast() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// enqueue asks for a pass over busid (a device, or a root hub: see
// reconcileRootHub); a busid already queued is not queued twice, so a
// storm of events for one device costs one pass.
func (a *Agent) enqueue(busid string, why Trigger) {
	if busid != everything && usbsysfs.ValidBusID(busid) != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.enqueueLocked(busid, why)
}

func (a *Agent) enqueueLocked(busid string, why Trigger) {
	if old, queued := a.why[busid]; queued {
		// The first scan of a run repairs at once (see TrigStart):
		// kernel events queued before it do not take that from it. An
		// echo of a rollback gives way to any other reason: a pass asked
		// for by one waits out a failure's backoff, and a reload or a
		// plug must not.
		if why == TrigStart || rollbackEcho(old) && !rollbackEcho(why) {
			a.why[busid] = why
		}
		return
	}
	a.why[busid] = why
	if strings.HasPrefix(busid, "usb") {
		// A root hub's pass goes first: a controller just added must be
		// made inert before the hub driver enumerates its ports' devices
		// (see reconcileRootHub), not after a storm queued before it.
		a.queue = slices.Insert(a.queue, 0, busid)
	} else {
		a.queue = append(a.queue, busid)
	}
	a.broadcast()
}

// enqueueAll asks for a pass over every device the agent can know of:
// present in sysfs, named by a port, or holding driver, ownership or
// giving records.
func (a *Agent) enqueueAll(ctx context.Context, why Trigger) error {
	if err := a.rescanSysfs(ctx, why); err != nil {
		return err
	}
	return a.enqueueRecorded(ctx, why)
}

// rescanSysfs reads every device in sysfs again, replaces the cache with
// that reading and asks for a pass over each device, and over each one
// the agent knew of that is no longer there.
func (a *Agent) rescanSysfs(ctx context.Context, why Trigger) error {
	devs, err := a.h.Sys.Devices()
	unread, err := usbsysfs.Partial(err)
	if err != nil {
		return err
	}
	cache := make(map[string]usbsysfs.Device, len(devs))
	for _, d := range devs {
		cache[d.BusID] = d
	}
	a.mu.Lock()
	// One that could not be read keeps its last reading: its twins are
	// told apart from it, or not, as before.
	for _, u := range unread {
		if d, ok := a.cache[u.BusID]; ok {
			cache[u.BusID] = d
		}
	}
	// What the agent knows of only from memory (a device denied, pending
	// or with dom0: no port, no record) and is no longer in sysfs left
	// while its events were lost: its pass finds it gone, and its status
	// goes.
	var known []string
	for b := range a.status {
		if _, ok := cache[b]; !ok {
			known = append(known, b)
		}
	}
	for b := range a.cache {
		if _, ok := cache[b]; !ok {
			known = append(known, b)
		}
	}
	a.cache, a.cacheOrder = cache, nil
	a.mu.Unlock()
	for _, b := range known {
		a.enqueue(b, why)
	}
	a.prunePresent(ctx, cache, unread)
	for _, d := range devs {
		a.notePlugged(d.BusID)
		a.enqueue(d.BusID, why)
	}
	// One that could not be read gets its pass too: it fails there, its
	// record says why, and it is retried, while the rest go on.
	for _, u := range unread {
		a.notePlugged(u.BusID)
		a.enqueue(u.BusID, why)
	}
	return nil
}

// enqueueRecorded asks for a pass over every busid the store names: at a
// port, or in a driver, ownership or giving record.
func (a *Agent) enqueueRecorded(ctx context.Context, why Trigger) error {
	// A read of the ports may predate the worker's latest attach
	// (noteAssignedSince).
	since := a.portGeneration()
	all, err := a.h.Assigned(ctx)
	if err != nil {
		return fmt.Errorf("agent: reading the ports: %w", err)
	}
	a.noteAssignedSince(all, since)
	for _, x := range all {
		a.enqueue(x.BusID, why)
	}
	recs, err := a.h.Records(ctx)
	if err != nil {
		return fmt.Errorf("agent: reading the driver records: %w", err)
	}
	for _, b := range recs {
		a.enqueue(b, why)
	}
	owned, err := ListOwned(ctx, a.h.XS)
	if err != nil {
		return fmt.Errorf("agent: reading the ownership records: %w", err)
	}
	for b := range owned {
		a.enqueue(b, why)
	}
	// A device that left while no agent ran, in the middle of its
	// give-back to dom0, has nothing else in the store.
	giving, err := a.h.XS.Directory(ctx, GivingRoot)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("agent: reading %s: %w", GivingRoot, err)
	}
	for _, n := range giving {
		if b := busidOf(n); usbsysfs.ValidBusID(b) == nil {
			a.enqueue(b, why)
		}
	}
	return nil
}

func (a *Agent) notePlugged(busid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.plugged[busid]; !ok {
		a.seq++
		a.plugged[busid] = a.seq
	}
}

// replugged notes the plug of o's device and says whether it is another
// than the one a pass last saw at its busid: unplugged and plugged again
// before any pass saw it gone (its remove and add queued behind one pass,
// or lost).
func (a *Agent) replugged(o observation) bool {
	if !o.present || o.dev.DevNum == 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	prev, seen := a.plugs[o.busid]
	a.plugs[o.busid] = o.dev.DevNum
	return seen && prev != 0 && prev != o.dev.DevNum
}

func (a *Agent) forgetPlugged(busid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.plugged, busid)
}

// WaitIdle waits until the queue is empty, no pass is running and no
// second look is due (a failure's retry may still be).
func (a *Agent) WaitIdle(ctx context.Context) error {
	for {
		a.mu.Lock()
		if len(a.queue) == 0 && !a.busy && len(a.looks) == 0 {
			a.mu.Unlock()
			return nil
		}
		ch := a.changed
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// next takes the next busid, waiting for one.
func (a *Agent) next(ctx context.Context) (string, Trigger, error) {
	for {
		a.mu.Lock()
		if len(a.queue) > 0 {
			b := a.queue[0]
			a.queue = a.queue[1:]
			why := a.why[b]
			delete(a.why, b)
			a.busy = true
			a.broadcast()
			a.mu.Unlock()
			return b, why, nil
		}
		if a.busy {
			a.busy = false
			a.broadcast()
		}
		ch := a.changed
		a.mu.Unlock()
		a.flushStatus()
		select {
		case <-ch:
		case <-ctx.Done():
			return "", "", ctx.Err()
		}
	}
}

// Run runs the agent's tasks in one group until ctx ends: kernel events
// from src, the hooks, and Serve on the store connection. A task that
// fails stops the others, and Run returns its error. The daemon runs the
// same tasks under its own owner instead, beside its other ones.
func (a *Agent) Run(ctx context.Context, src uevent.Source, ready func()) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return quiet(ctx, a.PumpEvents(ctx, src)) })
	if a.cfg.Hooks {
		g.Go(func() error { return quiet(ctx, a.RunHooks(ctx)) })
	}
	g.Go(func() error { return quiet(ctx, a.Serve(ctx, ready)) })
	return g.Wait()
}

// quiet drops the error a task returns because its context ended: the
// cause, if any, is the task that ended it.
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Serve runs the agent on the store connection a.h.XS until ctx ends or
// the connection is lost: the store's domain and backend watches, and the
// worker, which reconciles everything present before calling ready. A
// lost connection ends it with an error wrapping xenstore.ErrDisconnected;
// the caller dials again and serves again, and the new run starts with a
// full pass. It owns the goroutines it starts and waits for them.
func (a *Agent) Serve(ctx context.Context, ready func()) error {
	defer a.stopRetries()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	xs := a.h.XS
	events := make(chan xenstore.WatchEvent, 64)
	if !a.cfg.NoWatches {
		if err := a.watch(ctx, g, events); err != nil {
			// The watches set before it end with their context, not
			// with the connection, which may well stay up.
			cancel()
			g.Wait()
			return err
		}
	}
	g.Go(func() error {
		select {
		case <-xs.Done():
			return fmt.Errorf("agent: %w", xs.Err())
		case <-ctx.Done():
			return nil
		}
	})
	g.Go(func() error { a.pumpWatches(ctx, events); return nil })
	// Opened before the worker's first scan reads dom0's mounts, so that
	// an unmount just after that read still wakes it.
	if mw := a.openMountWatch(); mw != nil {
		g.Go(func() error { a.watchMounts(ctx, mw); return nil })
	}
	if !a.cfg.NoWatches {
		g.Go(func() error { a.watchHeld(ctx); return nil })
	}
	if c := a.h.Sys.Unlocked(); c != nil {
		g.Go(func() error { a.watchUnlocked(ctx, c); return nil })
	}
	g.Go(func() error { return quiet(ctx, a.work(ctx, ready)) })
	return g.Wait()
}

// heldEvery is how often the disks are looked at again while one is
// denied because device-mapper or md holds it: some let go of a disk with
// no event (mdadm --remove, a table reloaded onto other disks).
var heldEvery = 5 * time.Second

// watchHeld looks at the disks again every heldEvery while a present one
// is held (noteHeld), until ctx ends.
func (a *Agent) watchHeld(ctx context.Context) {
	t := time.NewTimer(heldEvery)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.heldWoke:
			t.Reset(heldEvery)
		case <-t.C:
			a.mu.Lock()
			held := len(a.heldDisks) > 0
			a.mu.Unlock()
			if held {
				a.StorageChanged(TrigHeldLook)
				t.Reset(heldEvery)
			}
		}
	}
}

// watchUnlocked passes again over each device that read as busy once
// the kernel lets go of it: nothing else may tell (a reset sends no
// event).
func (a *Agent) watchUnlocked(ctx context.Context, c <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c:
			for _, b := range a.h.Sys.TakeUnlocked() {
				a.enqueue(b, TrigUnlocked)
			}
		}
	}
}

// noteHeld records whether busid, a disk dom0 uses, is held by
// device-mapper or md, and starts watchHeld's looks when it newly is.
func (a *Agent) noteHeld(busid string, held bool) {
	a.mu.Lock()
	had := a.heldDisks[busid]
	if held {
		a.heldDisks[busid] = true
	} else {
		delete(a.heldDisks, busid)
	}
	a.mu.Unlock()
	if held && !had {
		select {
		case a.heldWoke <- struct{}{}:
		default: // a look is due already
		}
	}
}

// openMountWatch opens the watch of dom0's mounts for watchMounts; nil
// without one (NoWatches, or a file that cannot be opened: the agent
// works on, and says that a reload is needed after an unmount).
func (a *Agent) openMountWatch() *mounts.Watcher {
	if a.cfg.NoWatches {
		return nil
	}
	w, err := mounts.OpenWatch(a.cfg.Mountinfo)
	if err != nil {
		a.warn.Warn().Err(err).Msg(mountsUnwatched)
		return nil
	}
	return w
}

const mountsUnwatched = "dom0's mounts are not watched: after an unmount, run usbhotplugd reload to pass the disk"

// watchMounts looks at the disks again at each mount or unmount in dom0,
// until ctx ends, so that a disk refused while dom0 used it is passed once
// dom0 unmounts it. It closes w.
//
// An unmount leaves the mount table before the kernel has written the
// filesystem out and closed it, and that close sends no event: while a
// disk's filesystem is still open with no mount showing it, the disks are
// looked at again, after closingFirst and then twice as long each time
// (at most closingMax apart), for closingFor after the last change.
func (a *Agent) watchMounts(ctx context.Context, w *mounts.Watcher) {
	defer w.Close()
	ran := make(chan error, 1)
	go func() {
		ran <- w.Run(ctx, a.wakeMounts)
	}()
	again := time.NewTimer(0)
	again.Stop()
	defer again.Stop()
	var delay time.Duration
	var until time.Time
	look := func() {
		// Asked before the pass is queued: a filesystem closed by then
		// is closed for the pass too.
		closing := a.disksClosing()
		a.StorageChanged(TrigMounts)
		if closing && time.Now().Before(until) {
			again.Reset(delay)
			delay = min(2*delay, closingMax)
		}
	}
	for {
		select {
		case err := <-ran:
			if err != nil && ctx.Err() == nil {
				a.warn.Warn().Err(err).Msg(mountsUnwatched)
			}
			return
		case <-a.mountsWoke:
			again.Stop()
			delay, until = closingFirst, time.Now().Add(closingFor)
			look()
		case <-again.C:
			look()
		}
	}
}

// How the disks are looked at again while a filesystem closes (see
// watchMounts): a few hundred megabytes take a second or two to write out.
const (
	closingFirst = 100 * time.Millisecond
	closingMax   = 5 * time.Second
	closingFor   = time.Minute
)

// disksClosing says whether a present disk holds a filesystem the kernel
// has yet to close (inventory.Closing).
func (a *Agent) disksClosing() bool {
	return slices.ContainsFunc(a.presentDisks(), func(d usbsysfs.Device) bool {
		if inventory.Closing(a.h.Sys, d, a.cfg.Mountinfo) {
			return true
		}
		a.mu.Lock()
		_, open := a.openDisks[d.BusID]
		a.mu.Unlock()
		return open && inventory.Busy(a.h.Sys, d) != ""
	})
}

// stillOpen says why dom0 still has a disk of o's open though nothing it
// can see says so (inventory.Busy), or "": asked only of a device the
// policy is about to pass. A free device's disks are held (inventory.Hold)
// until release, called once the attach has unbound them from dom0, so
// that no mount takes them in between. A disk newly found open wakes the
// mount watch, which looks at it again until dom0 lets it go
// (disksClosing): an unmount's end brings no event.
func (a *Agent) stillOpen(o observation) (release func(), why string) {
	if !inventory.Storage(o.dev) {
		return func() {}, ""
	}
	release, why = inventory.Hold(a.h.Sys, o.dev)
	a.mu.Lock()
	_, had := a.openDisks[o.busid]
	if why == "" {
		delete(a.openDisks, o.busid)
	} else {
		a.openDisks[o.busid] = why
	}
	a.mu.Unlock()
	if why != "" && !had {
		a.wakeMounts()
	}
	return release, why
}

// wakeMounts asks watchMounts for a look at the disks.
func (a *Agent) wakeMounts() {
	select {
	case a.mountsWoke <- struct{}{}:
	default: // a look is due already
	}
}

// presentDisks are the present devices with a storage interface.
func (a *Agent) presentDisks() []usbsysfs.Device {
	a.mu.Lock()
	defer a.mu.Unlock()
	var disks []usbsysfs.Device
	for _, d := range a.cache {
		if inventory.Storage(d) {
			disks = append(disks, d)
		}
	}
	return disks
}

// StorageChanged passes over every present storage device again: dom0's
// mounts changed, or a device-mapper or md device that may have held one
// went.
func (a *Agent) StorageChanged(why Trigger) {
	var disks []string
	for _, d := range a.presentDisks() {
		disks = append(disks, d.BusID)
	}
	sortBusIDs(disks)
	for _, b := range disks {
		a.enqueue(b, why)
	}
}

// watch sets the store's watches; a goroutine in g forwards each one's
// events until ctx ends.
func (a *Agent) watch(ctx context.Context, g *errgroup.Group, events chan<- xenstore.WatchEvent) error {
	xs := a.h.XS
	for _, w := range [...]struct{ path, token string }{{"@introduceDomain", "uhd-intro"}, {"@releaseDomain", "uhd-release"}, {"/local/domain/0/backend", "uhd-backend"}, {"/vm", "uhd-vm"}} {
		ch, err := xs.Watch(ctx, w.path, w.token)
		if err != nil {
			return fmt.Errorf("agent: watching %s: %w", w.path, err)
		}
		g.Go(func() error {
			defer xs.Unwatch(context.WithoutCancel(ctx), w.path, w.token)
			for {
				select {
				case ev, ok := <-ch:
					if !ok {
						return nil
					}
					select {
					case events <- ev:
					case <-ctx.Done():
						return nil
					}
				case <-ctx.Done():
					return nil
				}
			}
		})
	}
	return nil
}

// work is the worker: the first pass over everything, readiness, then one
// pass per queued device until ctx ends.
func (a *Agent) work(ctx context.Context, ready func()) error {
	if err := a.refreshDomains(ctx); err != nil {
		return fmt.Errorf("agent: reading the domains: %w", err)
	}
	if err := a.loadPresent(ctx); err != nil {
		return err
	}
	if err := a.loadInert(ctx); err != nil {
		return err
	}
	if err := a.enqueueAll(ctx, TrigStart); err != nil {
		return fmt.Errorf("agent: first scan: %w", err)
	}
	readyOnce := sync.OnceFunc(func() {
		if ready != nil {
			ready()
		}
	})
	for {
		a.mu.Lock()
		idle := len(a.queue) == 0
		a.mu.Unlock()
		if len(a.intents) > 0 && (idle || len(a.intents) >= maxBatch) {
			a.timed(func() { a.flush(ctx) })
			continue
		}
		if idle {
			a.flushStatus() // the status is whole before readiness is told
			readyOnce()
		}
		busid, why, err := a.next(ctx)
		if err != nil {
			return err
		}
		if busid == everything {
			a.timed(func() {
				if err := a.enqueueAll(ctx, why); err != nil && ctx.Err() == nil {
					a.warn.Error().Err(err).Msg("rescan failed")
				}
			})
			continue
		}
		if f := a.beforePass.Load(); f != nil {
			(*f)(busid)
		}
		// Its next pass sees the batch done first. An attach there was
		// decided on the device its pass read: the batch does not attach
		// another device at the busid by now (a replug, a mode switch:
		// prepare checks the address), and this pass decides for it.
		if a.hasIntent(busid) {
			a.timed(func() { a.flush(ctx) })
		}
		a.passes.Add(1)
		a.timed(func() { a.reconcile(ctx, busid, why) })
	}
}

// timed marks the worker busy while f runs, for Stuck.
func (a *Agent) timed(f func()) {
	a.passStart.Store(time.Now().UnixNano())
	defer a.passStart.Store(0)
	f()
}

// PumpEvents hands the kernel's messages from src to Handle until src
// fails or ctx ends. A failed source is the daemon's end: without it, no
// device is ever seen again.
func (a *Agent) PumpEvents(ctx context.Context, src uevent.Source) error {
	for {
		m, err := src.Receive(ctx)
		if err != nil {
			return fmt.Errorf("kernel uevents: %w", err)
		}
		a.Handle(ctx, m)
	}
}

// Handle takes one message of the kernel: it queues a pass over the device
// it names (or over everything, after lost events).
func (a *Agent) Handle(ctx context.Context, m uevent.Message) {
	a.events.Add(1)
	if m.Overrun {
		a.overruns.Add(1)
		// The worker rescans: it alone holds the store connection.
		a.warn.Warn().Msg("kernel events were lost (receive buffer overrun): rescanning everything")
		a.enqueue(everything, TrigOverrun)
		return
	}
	if m.Refused != nil {
		a.refused.Add(1)
		if sub := m.RefusedSubsystem; sub != "" && sub != "usb" && sub != "block" {
			// None of the events the agent reads: a device's own strings
			// in its input or hid events, say. Nothing was lost, and a
			// device that can be plugged again and again cannot make
			// the host rescan each time.
			a.cfg.Log.Debug().Err(m.Refused).Str("subsystem", sub).Msg("a kernel event of another subsystem could not be read: ignored")
			return
		}
		a.warn.Warn().Err(m.Refused).Msg("a kernel event could not be read: rescanning everything")
		a.enqueue(everything, TrigRefused)
		return
	}
	e := m.Event
	if e.Subsystem == "block" && (e.Action == "remove" || e.Action == "change") && strings.HasPrefix(e.DevPath, "/devices/virtual/block/") {
		// dm or md stopped (cryptsetup close, vgchange -an, mdadm
		// --stop) or changed (a dm table resumed onto other disks, the
		// end of a pvmove): a disk it held may be free now.
		a.StorageChanged(TrigHolderGone)
		return
	}
	if e.Subsystem != "usb" {
		return
	}
	busid := e.Name()
	switch {
	case e.IsUSBInterface():
		busid = usbsysfs.InterfaceBusID(busid)
	case e.IsUSBDevice():
	default:
		return
	}
	why := kernelTrigger(e.Action)
	if m.Coldplug {
		why = TrigColdplug
	}
	if e.IsUSBDevice() && e.Action == "add" {
		a.notePlugged(busid)
	}
	a.enqueue(busid, why)
}

func (a *Agent) pumpWatches(ctx context.Context, events <-chan xenstore.WatchEvent) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			var b watchBurst
			b.note(ev)
			if !b.waitOut(ctx, events) {
				return
			}
			if b.domains {
				if err := a.refreshDomains(ctx); err != nil {
					a.warn.Error().Err(err).Msg("reading the domains failed")
					continue
				}
				// The worker rescans, between two passes: a scan read
				// here, beside a pass, would replace the devices the
				// pass read meanwhile (a twin plugged) with older ones.
				a.enqueue(everything, TrigDomains)
				continue
			}
			a.retryConnected(ctx, b.states)
			moved, err := a.movedPorts(ctx, b)
			if err != nil {
				if ctx.Err() == nil {
					a.warn.Error().Err(err).Msg("reading the ports failed")
				}
				continue
			}
			for _, busid := range moved {
				a.enqueue(busid, TrigPortChanged)
			}
		}
	}
}

// watchBurst is a burst of store changes coalesced into one look; a
// domain event anywhere in it means the domains are read again.
type watchBurst struct {
	domains, whole bool
	ports          []assign.Assignment
	states         []assign.Assignment // pv controllers whose backend changed state
}

func (b *watchBurst) note(ev xenstore.WatchEvent) {
	if ev.Token == "uhd-intro" || ev.Token == "uhd-release" || ev.Token == "uhd-vm" {
		// /vm itself: its watch's first event, or a storm's dropped
		// events (any guest may have been renamed).
		b.domains = b.domains || ev.Token != "uhd-vm" || isVMName(ev.Path) || ev.Path == "/vm"
		return
	}
	switch c, x := classifyBackend(ev.Path); c {
	case changeAll:
		b.whole = true
	case changePort:
		if !slices.Contains(b.ports, x) {
			b.ports = append(b.ports, x)
		}
	case changeState:
		if !slices.Contains(b.states, x) {
			b.states = append(b.states, x)
		}
	}
}

// waitOut takes the burst's further events until it is quiet for 2 ms (at
// most 20 ms): the agent's own attach fires the watch several times, and
// reading the ports meanwhile would only slow the attach. False when ctx
// ended.
func (b *watchBurst) waitOut(ctx context.Context, events <-chan xenstore.WatchEvent) bool {
	quiet := time.NewTimer(2 * time.Millisecond)
	limit := time.NewTimer(20 * time.Millisecond)
	defer quiet.Stop()
	defer limit.Stop()
	for {
		select {
		case ev := <-events:
			b.note(ev)
			quiet.Reset(2 * time.Millisecond)
		case <-quiet.C:
			return true
		case <-limit.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// movedPorts reads what a backend change did: only the devices whose port
// changed (xl attached or detached one, or a controller went) are looked
// at, not the whole bus; a change of single ports reads only those ports.
func (a *Agent) movedPorts(ctx context.Context, b watchBurst) ([]string, error) {
	since := a.portGeneration()
	switch {
	case b.whole:
		all, err := a.h.Assigned(ctx)
		if err != nil {
			return nil, err
		}
		return a.noteAssignedSince(all, since), nil
	case len(b.ports) > 0:
		paths := make([]string, len(b.ports))
		for i, x := range b.ports {
			paths[i], _ = assign.PortPath(x) // valid: classifyBackend checked it
		}
		vals, errs := a.h.XS.ReadMany(ctx, paths)
		for i, err := range errs {
			switch {
			case err == nil:
				b.ports[i].BusID = string(vals[i])
			case !errors.Is(err, syscall.ENOENT):
				return nil, err
			}
		}
		return a.notePorts(b.ports, since), nil
	}
	return nil, nil
}

func (a *Agent) refreshDomains(ctx context.Context) error {
	_, err := a.readDomains(ctx)
	return err
}

// readDomains reads the running domains by name; true when that changed.
func (a *Agent) readDomains(ctx context.Context) (bool, error) {
	doms, err := a.h.Domains(ctx)
	if err != nil {
		return false, err
	}
	m := map[string][]uint32{}
	ids := map[uint32]bool{}
	for _, d := range doms {
		if d.ID != 0 && d.Name != "" {
			m[d.Name] = append(m[d.Name], d.ID)
			ids[d.ID] = true
		}
	}
	a.mu.Lock()
	old := a.domains
	a.domains = m
	for id := range a.ensured {
		if !ids[id] {
			delete(a.ensured, id)
		}
	}
	a.mu.Unlock()
	changed := false
	for name, idl := range m {
		if !slices.Equal(old[name], idl) {
			changed = true
			logDomids(a.cfg.Log.Info().Str("domain", name), idl).Msg("domain is running")
		}
	}
	for name, idl := range old {
		if !slices.Equal(m[name], idl) {
			changed = true
			logDomids(a.cfg.Log.Info().Str("domain", name), idl).Msg("domain is gone")
		}
	}
	return changed, nil
}

// everything, queued, asks the worker for a pass over every device: a
// rescan asked from another goroutine than the worker's.
const everything = "*"

// Reload puts a new policy in force and passes over every device; what
// changes is logged, and only what the agent owns is moved. It may be
// called from any goroutine, while Run runs or not.
func (a *Agent) Reload(p *policy.Policy) {
	old := a.pol.Swap(p)
	devs, err := a.h.Sys.Devices()
	if _, err = usbsysfs.Partial(err); err == nil {
		inv := a.inventory(devs)
		for i := range inv {
			d := &inv[i]
			before, after := old.Match(d, inv), p.Match(d, inv)
			if before.Action != after.Action || targetName(before) != targetName(after) {
				a.cfg.Log.Info().Str("busid", d.BusID).Str("id", d.ID()).Str("before", strings.TrimSpace(before.Action.String()+" "+targetName(before))).
					Str("after", strings.TrimSpace(after.Action.String()+" "+targetName(after))).Str("reason", after.Reason).Msg("policy reload changes this device")
			}
		}
	}
	a.mu.Lock()
	clear(a.refusedBy) // a new policy may send it elsewhere
	a.mu.Unlock()
	a.cfg.Log.Info().Str("policy", p.File).Int("rules", len(p.Rules)).Msg("policy reloaded")
	a.enqueue(everything, TrigReload)
}

// Explained is what the policy in force says of one present device now,
// as the agent sees the host, beside the agent's last decision for it.
type Explained struct {
	Device      usbsysfs.Device
	Explanation policy.Explanation
	Last        *Audit
}

// Explain explains every present device, or only busid when it is not
// empty (fs.ErrNotExist when no such device is present). A device that
// cannot be read is left out (its last record says why), or is the error
// when it is busid. It may be called from any goroutine.
func (a *Agent) Explain(busid string) ([]Explained, error) {
	devs, err := a.h.Sys.Devices()
	unread, err := usbsysfs.Partial(err)
	if err != nil {
		return nil, err
	}
	if err := usbsysfs.UnreadOf(unread, busid); err != nil {
		return nil, err
	}
	pol := a.pol.Load()
	inv := a.inventory(devs)
	var out []Explained
	for i := range inv {
		if busid != "" && inv[i].BusID != busid {
			continue
		}
		// As a pass decides: a disk dom0 uses is denied whatever the rule,
		// also one the last pass found open (inventory.Busy, which is not
		// asked here: its exclusive open could fail an automounter's mount).
		inv[i].InUse = inventory.InUse(a.h.Sys, devs[i], a.cfg.Mountinfo)
		a.mu.Lock()
		if why, open := a.openDisks[inv[i].BusID]; open && inv[i].InUse == "" {
			inv[i].InUse = why
		}
		a.mu.Unlock()
		ex := Explained{Device: devs[i], Explanation: pol.Explain(&inv[i], inv)}
		a.mu.Lock()
		if r, ok := a.status[inv[i].BusID]; ok {
			ex.Last = &r
		}
		a.mu.Unlock()
		out = append(out, ex)
	}
	if busid != "" && len(out) == 0 {
		return nil, fmt.Errorf("no USB device %s on this host: %w", busid, fs.ErrNotExist)
	}
	return out, nil
}

func targetName(d policy.Decision) string {
	if d.Target == nil {
		return ""
	}
	return d.Target.Domain
}

// inventory converts a scan for the policy, with arrival order.
func (a *Agent) inventory(devs []usbsysfs.Device) []policy.Device {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]policy.Device, 0, len(devs))
	for _, d := range devs {
		pd := policy.Device{BusID: d.BusID, BusNum: d.BusNum, DevNum: d.DevNum, Vendor: d.Vendor, Product: d.Product,
			Class: d.Class, SubClass: d.SubClass, Protocol: d.Protocol, Serial: d.Serial, Manufacturer: d.Manufacturer,
			ProductName: d.ProductName, Plugged: a.plugged[d.BusID], Present: a.isPresentLocked(d),
			PortPath: d.PortPath, PortPathRev: d.PortPathRev, Hash: d.Hash, ParentHash: d.ParentHash}
		for _, in := range d.Interfaces {
			pd.Interfaces = append(pd.Interfaces, policy.Interface{Class: in.Class, SubClass: in.SubClass, Protocol: in.Protocol})
		}
		out = append(out, pd)
	}
	return out
}

// logDomids adds a domain's id to e as the audit records give it, a
// number; the ids of a name that several running domains share, as a list.
func logDomids(e *zerolog.Event, ids []uint32) *zerolog.Event {
	if len(ids) == 1 {
		return e.Uint32("domid", ids[0])
	}
	return e.Uints32("domids", ids)
}

type retry struct {
	timer *time.Timer
	delay time.Duration
	due   time.Time // when the timer queues the retry
}

// retryLater queues busid again after its backoff, which it returns: a
// failure (a driver busy, the store refusing a write) is not the end of
// the device.
func (a *Agent) retryLater(busid string) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.retries[busid]
	if r == nil {
		r = &retry{delay: 500 * time.Millisecond}
		a.retries[busid] = r
	} else {
		r.delay = min(2*r.delay, time.Minute)
		if r.timer != nil {
			r.timer.Stop()
		}
	}
	r.due = time.Now().Add(r.delay)
	r.timer = time.AfterFunc(r.delay, func() { a.enqueue(busid, TrigRetry) })
	return r.delay
}

// retryConnected tries now, rather than at their retries, the devices
// waiting for the guests of the controllers ctrls, whose backends changed
// state, where one is connected now: its guest's frontend has connected,
// and a retry's delay may have grown to a minute by then.
func (a *Agent) retryConnected(ctx context.Context, ctrls []assign.Assignment) {
	var woken []uint32
	for _, c := range ctrls {
		if slices.Contains(woken, c.Domid) {
			continue
		}
		st, err := a.h.XS.Read(ctx, fmt.Sprintf("/local/domain/0/backend/vusb/%d/%d/state", c.Domid, c.Controller))
		if err == nil && string(st) == "4" {
			woken = append(woken, c.Domid)
			a.retryPendingOf(c.Domid)
		}
	}
}

// retryPendingOf tries the devices pending for domid now.
func (a *Agent) retryPendingOf(domid uint32) {
	var due []string
	a.mu.Lock()
	for b, r := range a.retries {
		if st, ok := a.status[b]; ok && st.Action == ActPending && st.Domid == int(domid) {
			if r.timer != nil {
				r.timer.Stop()
			}
			delete(a.retries, b)
			due = append(due, b)
		}
	}
	a.mu.Unlock()
	for _, b := range due {
		a.enqueue(b, TrigRetry)
	}
}

// rollbackEcho says the trigger is one a failed attach's rollback makes
// itself: a driver's bind or unbind, its port cleared.
func rollbackEcho(t Trigger) bool {
	return t == kernelTrigger("bind") || t == kernelTrigger("unbind") || t == TrigPortChanged
}

// backingOffLocked says busid's last attempt failed and its retry is not due
// yet.
func (a *Agent) backingOffLocked(busid string) bool {
	r := a.retries[busid]
	return r != nil && time.Now().Before(r.due)
}

// lookLater queues busid once more after d (a timer owned like the
// retries, apart from them: a failure's backoff does not delay it).
func (a *Agent) lookLater(busid string, d time.Duration, why Trigger) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lookLocked(a.looks, busid, d, why) {
		a.broadcast() // WaitIdle waits for it
	}
}

// probeLook is how long after a kernel event a device the kernel had not
// finished probing is looked at again: its bind ends a probe well before.
const probeLook = 2 * time.Second

// lookAfterProbe queues busid once more after probeLook, unless such a
// look is due already. WaitIdle does not wait for it: what it waits for,
// the device's bind, comes from outside (a replay feeds the next event
// only once the agent is idle), and the look is only for a bind that
// never comes.
func (a *Agent) lookAfterProbe(busid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lookLocked(a.probeLooks, busid, probeLook, TrigProbeLook)
}

// lookLocked sets a timer in looks that queues busid after d, false when
// one is due already; a.mu is held. The timer leaves looks as it queues
// busid, so the agent never looks idle in between.
func (a *Agent) lookLocked(looks map[string]*time.Timer, busid string, d time.Duration, why Trigger) bool {
	if looks[busid] != nil {
		return false
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if looks[busid] == t {
			delete(looks, busid)
		}
		a.enqueueLocked(busid, why)
	})
	looks[busid] = t
	return true
}

// succeeded resets busid's backoff.
func (a *Agent) succeeded(busid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.retries[busid]; r != nil {
		r.timer.Stop()
		delete(a.retries, busid)
		a.broadcast()
	}
}

func (a *Agent) stopRetries() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for b, r := range a.retries {
		r.timer.Stop()
		delete(a.retries, b)
	}
	for _, looks := range []map[string]*time.Timer{a.looks, a.probeLooks} {
		for b, t := range looks {
			t.Stop()
			delete(looks, b)
		}
	}
	a.broadcast()
}

// noteAssigned records where every busid is and returns those that moved
// since the last look.
func (a *Agent) noteAssigned(all []assign.Assignment) []string {
	return a.noteAssignedSince(all, ^uint64(0))
}

// noteAssignedSince is noteAssigned for a read started at port generation
// since (portGeneration) by another goroutine than the worker: a busid the
// worker attached or detached meanwhile keeps what the worker knows, since
// the read may predate it (the store's watch tells of it again anyway).
func (a *Agent) noteAssignedSince(all []assign.Assignment, since uint64) []string {
	now := make(map[string]assign.Assignment, len(all))
	for _, x := range all {
		now[x.BusID] = x
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var moved []string
	for b, g := range a.touched {
		if g > since {
			// The worker's knowledge stands, but a read that differs is
			// looked at: it may be the newer (see notePorts).
			rx, rok := now[b]
			wx, wok := a.ports[b]
			if rok != wok || rx != wx {
				moved = append(moved, b)
			}
			delete(now, b)
			if wok {
				now[b] = wx
			}
		}
	}
	for b, x := range now {
		if old, ok := a.ports[b]; !ok || old != x {
			moved = append(moved, b)
		}
	}
	for b := range a.ports {
		if _, ok := now[b]; !ok {
			moved = append(moved, b)
		}
	}
	a.ports = now
	sort.Slice(moved, func(i, j int) bool { return usbsysfs.BusIDLess(moved[i], moved[j]) })
	return moved
}

// maxTouched bounds the busids whose last local port change is kept.
const maxTouched = 4096

// portGeneration counts the worker's own port changes, for reads made
// elsewhere to know what they may predate.
func (a *Agent) portGeneration() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.portGen
}

// portOf is where busid was last seen.
func (a *Agent) portOf(busid string) (assign.Assignment, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	x, ok := a.ports[busid]
	return x, ok
}

// portList is every remembered assignment.
func (a *Agent) portList() []assign.Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]assign.Assignment, 0, len(a.ports))
	for _, x := range a.ports {
		out = append(out, x)
	}
	return out
}

// setPort remembers the agent's own attach (or detach) of x.
func (a *Agent) setPort(x assign.Assignment, at bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.portGen++
	if len(a.touched) >= maxTouched {
		// Forgetting only lets a stale read through, which the next
		// watch event corrects.
		clear(a.touched)
	}
	a.touched[x.BusID] = a.portGen
	if at {
		a.ports[x.BusID] = x
	} else if y, ok := a.ports[x.BusID]; ok && y.Domid == x.Domid && y.Controller == x.Controller && y.Port == x.Port {
		delete(a.ports, x.BusID)
	}
}

// remember puts a device read by a pass into the cache (present) or drops
// it, and returns the cached devices in busid order. The order is kept
// apart and made again only when a busid comes or goes: a storm of
// devices must not sort the bus at every pass.
func (a *Agent) remember(busid string, d usbsysfs.Device, present bool) []usbsysfs.Device {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, had := a.cache[busid]
	if present {
		a.cache[busid] = d
	} else {
		delete(a.cache, busid)
	}
	switch {
	case a.cacheOrder == nil:
		a.cacheOrder = slices.Collect(maps.Keys(a.cache))
		sortBusIDs(a.cacheOrder)
	case had != present:
		// One busid came or went: its place is found, not the whole
		// order made again (a storm of arrivals would sort at each).
		i, found := slices.BinarySearchFunc(a.cacheOrder, busid, compareBusIDs)
		if present && !found {
			a.cacheOrder = slices.Insert(a.cacheOrder, i, busid)
		} else if !present && found {
			a.cacheOrder = slices.Delete(a.cacheOrder, i, i+1)
		}
	}
	out := make([]usbsysfs.Device, len(a.cacheOrder))
	for i, b := range a.cacheOrder {
		out[i] = a.cache[b]
	}
	return out
}

// Rescan reads the domains again and passes over every device, as a
// change of domains or a lost event does.
func (a *Agent) Rescan(ctx context.Context, why string) error {
	if err := a.refreshDomains(ctx); err != nil {
		return err
	}
	a.enqueue(everything, Trigger(why)) // on the worker, as pumpWatches does
	return nil
}

//! A fixed team of threads for the kernels' fork-join, built once and kept
//! for every forward pass.
//!
//! A batch-1 layer of the seed MLP takes ~50 µs; waking a sleeping thread
//! through the kernel takes 10–50 µs on a virtual machine, so a pool whose
//! workers sleep between layers (rayon's, or spawning per call) loses most
//! of what a second thread gains. Between jobs this team's workers spin for
//! a while before they park, so consecutive layers find them awake, as
//! ONNX Runtime's intra-op pool does.
//!
//! The calling thread is a member: [`Team::run`] publishes a job of `parts`
//! numbered parts, every member (the caller included) claims parts from a
//! shared counter until none is left, and `run` returns once all are done.
//! A team of one thread has no workers and runs the parts in order.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

/// Spin iterations before an idle worker parks (0.1–1 ms, as a `pause`
/// takes 10–140 cycles depending on the CPU): long enough to bridge the gaps
/// between layers, short enough not to burn a core long after a forward pass.
const SPIN_ROUNDS: usize = 1 << 14;

/// The threads that run kernel parts.
pub struct Team {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// A job: a part function whose lifetime `run` erases and guarantees.
type PartFn = dyn Fn(usize) + Sync;

/// What the members share.
struct Shared {
    /// Even: no job open; odd: job `epoch / 2` open. Publishing and
    /// closing a job each add one.
    epoch: AtomicUsize,
    /// Workers between announcing interest in a job and leaving it; the
    /// caller waits for zero before it closes a job's borrow.
    joined: AtomicUsize,
    /// The next part to claim, and how many are finished.
    next: AtomicUsize,
    done: AtomicUsize,
    /// The open job; written only while no worker is joined.
    job: UnsafeCell<Job>,
    /// Parked workers wait here for a new epoch.
    parked: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
    /// Workers that have entered their loop; `Team::new` waits for all.
    started: AtomicUsize,
}

#[derive(Clone, Copy)]
struct Job {
    parts: usize,
    f: Option<&'static PartFn>,
}

// SAFETY: `job` is written by the caller of `run` only while `joined` is
// zero and the epoch is even (no worker reads it then), and read by workers
// only while they are joined and have seen an odd epoch, which the caller
// publishes after writing; every access to it is ordered by the SeqCst
// operations on `epoch` and `joined`.
unsafe impl Sync for Shared {}

impl Team {
    /// A team of `threads` threads (the caller and `threads − 1` workers).
    ///
    /// Returns once every worker has started and waits for jobs: a thread
    /// still starting allocates (its stack guard, name, thread-locals), and
    /// a caller that measures or times the first job must not see that.
    pub fn new(threads: usize) -> std::io::Result<Team> {
        let threads = threads.max(1);
        if threads > 1 {
            // The members' per-thread buffers, before any part runs.
            crate::kernels::gemm::reserve();
        }
        let shared = Arc::new(Shared::new());
        let mut team = Team {
            threads,
            shared,
            workers: Vec::new(),
        };
        for i in 1..threads {
            let shared = Arc::clone(&team.shared);
            let worker = std::thread::Builder::new()
                .name(format!("nnc-worker-{i}"))
                .spawn(move || shared.work())?;
            // On an error `team` drops here and stops the workers started so far.
            team.workers.push(worker);
        }
        let mut guard = team.shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while team.shared.started.load(SeqCst) < threads - 1 {
            guard = team.shared.wake.wait(guard).unwrap_or_else(PoisonError::into_inner);
        }
        drop(guard);
        Ok(team)
    }

    /// A team of one: runs every part on the calling thread.
    pub fn single() -> Team {
        Team {
            threads: 1,
            shared: Arc::new(Shared::new()),
            workers: Vec::new(),
        }
    }

    /// How many threads run parts, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(0) … f(parts − 1)`, spread over the team, and returns when
    /// all have run. Parts must not depend on each other's order.
    pub fn run<'a>(&self, parts: usize, f: &'a (dyn Fn(usize) + Sync + 'a)) {
        if parts <= 1 || self.workers.is_empty() {
            (0..parts).for_each(f);
            return;
        }
        let s = &*self.shared;
        // SAFETY: the borrow of `f` outlives its use: every worker that can
        // read the job has left it (`joined` is zero, below) before `run`
        // returns, so the 'static the slot claims is never relied on.
        let f: &'static PartFn = unsafe { std::mem::transmute::<&'a (dyn Fn(usize) + Sync + 'a), &'static PartFn>(f) };
        // SAFETY: no job is open and no worker is joined (the previous `run`
        // waited for that), so nobody reads the slot while it is written.
        unsafe { *s.job.get() = Job { parts, f: Some(f) } };
        s.next.store(0, SeqCst);
        s.done.store(0, SeqCst);
        s.epoch.fetch_add(1, SeqCst); // open
        if s.parked.load(SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
            s.wake.notify_all();
        }
        s.claim_parts(parts, f);
        while s.done.load(SeqCst) < parts {
            std::hint::spin_loop();
        }
        s.epoch.fetch_add(1, SeqCst); // close
        while s.joined.load(SeqCst) > 0 {
            std::hint::spin_loop();
        }
    }
}

/// Output floats a part must write for [`Team::per_samples`] to share a
/// batch. Between the ops of a forward pass the workers spin, so a job
/// costs about a microsecond, not a wake-up; and a pool's planes shared
/// are read by the thread whose conv wrote them, where one thread would
/// read the other core's half: cifar_vgg's 2 × 2 pools at batch 1 (4 K
/// and 2 K outputs) took 10 µs on one of two threads and 5.5 shared,
/// which a bar of 32 K outputs had kept from sharing.
const SAMPLE_WORK: usize = 1 << 11;

/// An op on a run of samples: `(x, samples, y)`.
pub type SampleFn<'a> = dyn Fn(&[f32], usize, &mut [f32]) + Sync + 'a;

impl Team {
    /// Runs `f(x, n, y)` on runs of `n` consecutive samples of a batch of
    /// `batch` (`x` and `y` hold `batch` samples each), shared among the
    /// team where the batch is large enough: for an op whose samples are
    /// computed independently (a pool, a norm over a sample, an activation),
    /// whose kernel is then one thread's, and whose results do not depend
    /// on how the batch was split.
    pub fn per_samples(&self, batch: usize, x: &[f32], y: &mut [f32], f: &SampleFn<'_>) {
        let parts = self.threads().min(batch).min(y.len() / SAMPLE_WORK).max(1);
        if parts == 1 || batch == 0 {
            return f(x, batch, y);
        }
        let (x_per, y_per) = (x.len() / batch, y.len() / batch);
        let out = Disjoint::new(y);
        self.run(parts, &|part| {
            let samples = crate::kernels::dense::split(batch, parts, part, 1);
            // SAFETY: the parts' runs of samples are disjoint.
            let y = unsafe { out.piece(samples.start * y_per..samples.end * y_per) };
            f(&x[samples.start * x_per..samples.end * x_per], samples.len(), y);
        });
    }
}

/// A whole pass on a run of samples, in a lane of its own: `(lane, x,
/// samples, y)`.
pub type LaneFn<'a, L> = dyn Fn(&mut L, &[f32], usize, &mut [f32]) + Sync + 'a;

impl Team {
    /// Runs `f(lane, x, n, y)` on passes of up to `per_pass` consecutive
    /// samples of a batch of `batch` (`x` and `y` hold `batch` samples
    /// each), every member of the team in a lane of its own (`lanes` holds
    /// at least one per member: its buffers, its scratch, its team of one)
    /// and claiming the next pass as it finishes one. For an inference of
    /// large samples: each member takes its samples through every op, so
    /// no op waits for the other members, and a member the machine slows
    /// down takes fewer passes. The results must not depend on which lane
    /// ran a pass.
    pub fn per_lane<L: Send>(
        &self,
        lanes: &mut [L],
        batch: usize,
        per_pass: usize,
        x: &[f32],
        y: &mut [f32],
        f: &LaneFn<'_, L>,
    ) {
        assert!(lanes.len() >= self.threads(), "a lane for each of the team's threads");
        if batch == 0 {
            return;
        }
        let (x_per, y_per) = (x.len() / batch, y.len() / batch);
        let per_pass = per_pass.max(1);
        let passes = batch.div_ceil(per_pass);
        let members = self.threads().min(passes);
        let next = AtomicUsize::new(0);
        let out = Disjoint::new(y);
        let lanes = Disjoint::new(lanes);
        self.run(members, &|member| {
            // SAFETY: each member of `run` takes a different part number.
            let lane = unsafe { &mut lanes.piece(member..member + 1)[0] };
            loop {
                let pass = next.fetch_add(1, SeqCst);
                if pass >= passes {
                    return;
                }
                let samples = pass * per_pass..((pass + 1) * per_pass).min(batch);
                // SAFETY: each pass is claimed once, and passes are disjoint runs of samples.
                let y = unsafe { out.piece(samples.start * y_per..samples.end * y_per) };
                f(lane, &x[samples.start * x_per..samples.end * x_per], samples.len(), y);
            }
        });
    }
}

impl Shared {
    fn new() -> Shared {
        Shared {
            epoch: AtomicUsize::new(0),
            joined: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            job: UnsafeCell::new(Job { parts: 0, f: None }),
            parked: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            started: AtomicUsize::new(0),
        }
    }

    /// Claims and runs parts until none is left.
    fn claim_parts(&self, parts: usize, f: &PartFn) {
        loop {
            let part = self.next.fetch_add(1, SeqCst);
            if part >= parts {
                return;
            }
            f(part);
            self.done.fetch_add(1, SeqCst);
        }
    }

    /// A worker's life: wait for an open job, join it, claim parts, leave.
    fn work(&self) {
        crate::kernels::gemm::reserve();
        let mut seen = self.epoch.load(SeqCst);
        {
            // The caller of `Team::new` waits on `wake` until all have started.
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.started.fetch_add(1, SeqCst);
            self.wake.notify_all();
        }
        loop {
            let epoch = self.wait_for_change(seen);
            if self.stop.load(SeqCst) {
                return;
            }
            seen = epoch;
            if epoch.is_multiple_of(2) {
                continue;
            }
            self.joined.fetch_add(1, SeqCst);
            // Still the same open job? Only then may the slot be read.
            if self.epoch.load(SeqCst) == epoch {
                // SAFETY: joined while the job is open (see `unsafe impl Sync`).
                let job = unsafe { *self.job.get() };
                if let Some(f) = job.f {
                    self.claim_parts(job.parts, f);
                }
            }
            self.joined.fetch_sub(1, SeqCst);
        }
    }

    /// Spins, then parks, until the epoch differs from `seen` or the team stops.
    fn wait_for_change(&self, seen: usize) -> usize {
        for _ in 0..SPIN_ROUNDS {
            let epoch = self.epoch.load(SeqCst);
            if epoch != seen || self.stop.load(SeqCst) {
                return epoch;
            }
            std::hint::spin_loop();
        }
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.parked.fetch_add(1, SeqCst);
        loop {
            let epoch = self.epoch.load(SeqCst);
            if epoch != seen || self.stop.load(SeqCst) {
                self.parked.fetch_sub(1, SeqCst);
                return epoch;
            }
            guard = self.wake.wait(guard).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            // A worker that panicked has nothing left to clean up.
            let _ = worker.join();
        }
    }
}

/// A mutable slice that the parts of one [`Team::run`] write in disjoint
/// pieces (which a closure shared by all parts cannot borrow otherwise):
/// floats, or a lane per part ([`Team::per_lane`]).
#[derive(Clone, Copy)]
pub(crate) struct Disjoint<'a, T = f32> {
    ptr: *mut T,
    len: usize,
    _borrow: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: parts only form non-overlapping pieces (the contract of `piece`),
// and a piece moves to the part's thread, so `T` must be `Send`.
unsafe impl<T: Send> Send for Disjoint<'_, T> {}
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub(crate) fn new(slice: &'a mut [T]) -> Disjoint<'a, T> {
        Disjoint {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _borrow: std::marker::PhantomData,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The whole slice as a pointer, for kernels whose pieces are not
    /// contiguous (column blocks of a row-major matrix).
    pub(crate) fn as_mut_ptr(&self) -> *mut T {
        self.ptr
    }

    /// Elements `range`, clamped to the slice.
    ///
    /// # Safety
    /// No two live pieces (of any part) may overlap.
    pub(crate) unsafe fn piece(&self, range: std::ops::Range<usize>) -> &'a mut [T] {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        std::slice::from_raw_parts_mut(self.ptr.add(start), end - start)
    }
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Team({} threads)", self.threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_per_job() {
        for threads in [1, 2, 3, 5] {
            let team = Team::new(threads).unwrap();
            assert_eq!(team.threads(), threads);
            for parts in [0, 1, 2, 7, 64] {
                for _ in 0..200 {
                    let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                    team.run(parts, &|p| {
                        counts[p].fetch_add(1, SeqCst);
                    });
                    assert!(
                        counts.iter().all(|c| c.load(SeqCst) == 1),
                        "{threads} threads, {parts} parts"
                    );
                }
            }
        }
    }

    #[test]
    fn every_sample_passes_once_through_one_lane() {
        for threads in [1, 2, 3] {
            let team = Team::new(threads).unwrap();
            for (batch, per_pass) in [(1, 1), (2, 1), (7, 2), (64, 1), (5, 8)] {
                // Each lane counts the samples it ran; a lane borrowed by
                // two members at once would miscount (or trip Miri).
                let mut lanes = vec![0usize; threads];
                let x: Vec<f32> = (0..batch * 3).map(|i| i as f32).collect();
                let mut y = vec![0.0; batch * 2];
                team.per_lane(&mut lanes, batch, per_pass, &x, &mut y, &|lane, x, n, y| {
                    assert!(n >= 1 && n <= per_pass && x.len() == n * 3 && y.len() == n * 2);
                    *lane += n;
                    for (x, y) in x.chunks(3).zip(y.chunks_mut(2)) {
                        y[0] = x[0];
                        y[1] += x[1] + x[2];
                    }
                });
                assert_eq!(lanes.iter().sum::<usize>(), batch, "{threads} threads, batch {batch}");
                for s in 0..batch {
                    let first = (s * 3) as f32;
                    assert_eq!(y[s * 2..s * 2 + 2], [first, 2.0 * first + 3.0], "sample {s}");
                }
            }
        }
    }

    #[test]
    fn parked_workers_wake_for_a_new_job() {
        let team = Team::new(2).unwrap();
        // Long enough for the worker to stop spinning and park.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let ran = AtomicUsize::new(0);
        team.run(8, &|_| {
            ran.fetch_add(1, SeqCst);
        });
        assert_eq!(ran.load(SeqCst), 8);
    }

    #[test]
    fn parts_really_run_on_several_threads() {
        let team = Team::new(2).unwrap();
        let ids = Mutex::new(std::collections::HashSet::new());
        // Each part waits until some other thread has run a part too: the
        // part that blocks one member leaves the rest for the other, however
        // late the scheduler lets it run (bounded, so a broken team fails).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        team.run(16, &|_| {
            ids.lock().unwrap().insert(std::thread::current().id());
            while ids.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
        });
        assert_eq!(ids.lock().unwrap().len(), 2);
    }

    #[test]
    fn new_returns_with_every_worker_started() {
        for threads in [2, 3, 8] {
            let team = Team::new(threads).unwrap();
            assert_eq!(team.shared.started.load(SeqCst), threads - 1);
        }
    }
}

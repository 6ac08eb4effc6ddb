//! The memory a generated model's forward pass runs in: its planned
//! buffers, its scratch and its thread team, kept between calls so that a
//! forward pass allocates nothing and starts no thread.

use crate::aligned::{line_offset, LINE};
use crate::Team;

/// Buffers for one model at up to some batch size, and the team that runs
/// its kernels. Make one per thread that calls `forward_into`, with the
/// model's `workspace` function, and keep it.
pub struct Workspace {
    team: Team,
    arena: Vec<f32>,
    /// Indices a training step records (max-pool arg-maxes).
    indices: Vec<u32>,
    /// The most buffers a split has cut the arena into: each starts on a
    /// cache line, so the arena has room for that many lines of padding.
    regions: usize,
    /// Where an inference goes in passes on several threads, a workspace
    /// of one thread for each ([`Workspace::in_passes`]).
    lanes: Vec<Workspace>,
}

/// A whole forward pass of a model on a run of samples, in a workspace:
/// `(ws, x, samples, out)`.
pub type PassFn<'a> = dyn Fn(&mut Workspace, &[f32], usize, &mut [f32]) + Sync + 'a;

impl Workspace {
    /// A workspace whose kernels run on `threads` threads (the caller and
    /// `threads − 1` workers).
    pub fn new(threads: usize) -> std::io::Result<Workspace> {
        Ok(Workspace {
            team: Team::new(threads)?,
            arena: Vec::new(),
            indices: Vec::new(),
            regions: 0,
            lanes: Vec::new(),
        })
    }

    /// A workspace that runs everything on the calling thread.
    pub fn single() -> Workspace {
        Workspace {
            team: Team::single(),
            arena: Vec::new(),
            indices: Vec::new(),
            regions: 0,
            lanes: Vec::new(),
        }
    }

    pub fn threads(&self) -> usize {
        self.team.threads()
    }

    /// Grows the arena to hold `per_sample` floats for each of `batch`
    /// samples plus `scratch` more; a no-op (no allocation) when it already
    /// does.
    pub fn reserve(&mut self, per_sample: usize, batch: usize, scratch: usize) {
        // Room to start the arena, and each buffer, on a cache line (4 KiB
        // of padding for up to 63 buffers, whether or not a split has
        // been seen yet, so reserving ahead keeps the first split from
        // growing the arena).
        let want = per_sample * batch + scratch + LINE * (self.regions.max(63) + 1);
        if self.arena.len() < want {
            self.arena.resize(want, 0.0);
        }
    }

    /// On several threads, a lane for each with room for `per_sample`
    /// floats of `per_pass` samples plus `scratch` more (its team of one's
    /// scratch); a no-op (no allocation) when they are there.
    pub fn reserve_lanes(&mut self, per_sample: usize, per_pass: usize, scratch: usize) {
        if self.threads() < 2 {
            return;
        }
        self.lanes.resize_with(self.threads(), Workspace::single);
        for lane in &mut self.lanes {
            lane.reserve(per_sample, per_pass, scratch);
        }
    }

    /// Runs `pass` over a batch of `batch` samples (`x` and `out` hold
    /// that many each), `per_pass` samples a thread at a time: on one
    /// thread, or a batch of one, in this workspace (whose team shares
    /// each op of a pass); otherwise each thread takes its passes through
    /// every op alone, in a lane of its own ([`Team::per_lane`]), whose
    /// buffers [`Workspace::reserve_lanes`] sized with `lane` =
    /// `(per_sample, scratch)`.
    pub fn in_passes(
        &mut self,
        x: &[f32],
        batch: usize,
        per_pass: usize,
        out: &mut [f32],
        lane: (usize, usize),
        pass: &PassFn<'_>,
    ) {
        if batch == 0 {
            return;
        }
        if self.threads() < 2 || batch == 1 {
            let n = per_pass.clamp(1, batch);
            let (x_per, out_per) = (x.len() / batch, out.len() / batch);
            for (x, out) in x.chunks(n * x_per).zip(out.chunks_mut(n * out_per)) {
                pass(self, x, x.len() / x_per, out);
            }
            return;
        }
        self.reserve_lanes(lane.0, per_pass, lane.1);
        self.team.per_lane(&mut self.lanes, batch, per_pass, x, out, pass);
    }

    /// The arena cut into `N` buffers of `lens[i] · batch` floats and a
    /// scratch buffer of `scratch` floats, with the team (growing the arena
    /// first if it is too small).
    pub fn split<const N: usize>(
        &mut self,
        lens: [usize; N],
        batch: usize,
        scratch: usize,
    ) -> ([&mut [f32]; N], &mut [f32], &Team) {
        self.regions = self.regions.max(N);
        self.reserve(lens.iter().sum(), batch, scratch);
        let mut rest: &mut [f32] = from_line(&mut self.arena);
        let buffers = lens.map(|len| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len * batch);
            rest = skip_to_line(tail, len * batch);
            head
        });
        (buffers, &mut rest[..scratch], &self.team)
    }

    /// The arenas cut for a training step: `N` float regions of
    /// `per_sample · batch + fixed` floats each (`sizes[i]` is
    /// `(per_sample, fixed)`: values, masks, a norm's statistics, a weight
    /// mask), `M` index regions of `index_lens[i] · batch`, and `scratch`
    /// floats, with the team (growing the arenas first if too small).
    #[allow(clippy::type_complexity)]
    pub fn split_regions<const N: usize, const M: usize>(
        &mut self,
        sizes: [(usize, usize); N],
        index_lens: [usize; M],
        batch: usize,
        scratch: usize,
    ) -> ([&mut [f32]; N], [&mut [u32]; M], &mut [f32], &Team) {
        self.regions = self.regions.max(N);
        self.reserve_regions(&sizes, &index_lens, batch, scratch);
        let mut rest: &mut [f32] = from_line(&mut self.arena);
        let floats = sizes.map(|(per_sample, fixed)| {
            let len = per_sample * batch + fixed;
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            rest = skip_to_line(tail, len);
            head
        });
        let mut rest_indices: &mut [u32] = &mut self.indices;
        let indices = index_lens.map(|len| {
            let (head, tail) = std::mem::take(&mut rest_indices).split_at_mut(len * batch);
            rest_indices = tail;
            head
        });
        (floats, indices, &mut rest[..scratch], &self.team)
    }

    /// Grows the arenas for [`Workspace::split_regions`] with these sizes;
    /// a no-op (no allocation) when they are large enough.
    pub fn reserve_regions(&mut self, sizes: &[(usize, usize)], index_lens: &[usize], batch: usize, scratch: usize) {
        let floats: usize = sizes.iter().map(|(per_sample, fixed)| per_sample * batch + fixed).sum();
        self.reserve(0, batch, floats + scratch);
        let indices: usize = index_lens.iter().sum::<usize>() * batch;
        if self.indices.len() < indices {
            self.indices.resize(indices, 0);
        }
    }
}

/// `arena` from its first cache line on.
fn from_line(arena: &mut [f32]) -> &mut [f32] {
    let start = line_offset(arena.as_ptr()).min(arena.len());
    &mut arena[start..]
}

/// `rest` from the first cache line at or after its start, given that it
/// starts `len` floats after a line boundary.
fn skip_to_line(rest: &mut [f32], len: usize) -> &mut [f32] {
    let pad = (LINE - len % LINE) % LINE;
    let at = pad.min(rest.len());
    &mut rest[at..]
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("threads", &self.team.threads())
            .field("floats", &self.arena.len())
            .field("lanes", &self.lanes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_disjoint_and_sized() {
        let mut ws = Workspace::single();
        let ([a, b], scratch, team) = ws.split([3, 2], 4, 5);
        assert_eq!((a.len(), b.len(), scratch.len(), team.threads()), (12, 8, 5, 1));
        a.fill(1.0);
        b.fill(2.0);
        scratch.fill(3.0);
        assert_eq!(ws.arena.iter().sum::<f32>(), 12.0 + 16.0 + 15.0);
        // A smaller batch fits in what is there: no growth.
        let before = ws.arena.as_ptr();
        let _ = ws.split([3, 2], 1, 0);
        assert_eq!(ws.arena.as_ptr(), before);
    }

    #[test]
    fn buffers_start_on_cache_lines() {
        let mut ws = Workspace::single();
        let ([a, b, c], scratch, _) = ws.split([3, 17, 1], 5, 7);
        for buf in [&*a, &*b, &*c, &*scratch] {
            assert_eq!(buf.as_ptr() as usize % 64, 0);
        }
        let ([d, e], [_], scratch, _) = ws.split_regions([(3, 1), (0, 5)], [2], 3, 2);
        for buf in [&*d, &*e, &*scratch] {
            assert_eq!(buf.as_ptr() as usize % 64, 0);
        }
    }

    #[test]
    fn regions_are_per_sample_plus_fixed() {
        let mut ws = Workspace::single();
        let ([a, b], [i], scratch, _) = ws.split_regions([(3, 0), (0, 4)], [2], 5, 1);
        assert_eq!((a.len(), b.len(), i.len(), scratch.len()), (15, 4, 10, 1));
        i.fill(7);
        let before = (ws.arena.as_ptr(), ws.indices.as_ptr());
        let _ = ws.split_regions([(3, 0), (0, 4)], [2], 2, 1);
        assert_eq!((ws.arena.as_ptr(), ws.indices.as_ptr()), before);
    }
}

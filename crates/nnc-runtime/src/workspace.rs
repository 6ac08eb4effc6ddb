//! The memory a generated model's forward pass runs in: its planned
//! buffers, its scratch and its thread team, kept between calls so that a
//! forward pass allocates nothing and starts no thread.

use crate::Team;

/// Buffers for one model at up to some batch size, and the team that runs
/// its kernels. Make one per thread that calls `forward_into`, with the
/// model's `workspace` function, and keep it.
pub struct Workspace {
    team: Team,
    arena: Vec<f32>,
}

impl Workspace {
    /// A workspace whose kernels run on `threads` threads (the caller and
    /// `threads − 1` workers).
    pub fn new(threads: usize) -> std::io::Result<Workspace> {
        Ok(Workspace {
            team: Team::new(threads)?,
            arena: Vec::new(),
        })
    }

    /// A workspace that runs everything on the calling thread.
    pub fn single() -> Workspace {
        Workspace {
            team: Team::single(),
            arena: Vec::new(),
        }
    }

    pub fn threads(&self) -> usize {
        self.team.threads()
    }

    /// Grows the arena to hold `per_sample` floats for each of `batch`
    /// samples plus `scratch` more; a no-op (no allocation) when it already
    /// does.
    pub fn reserve(&mut self, per_sample: usize, batch: usize, scratch: usize) {
        let want = per_sample * batch + scratch;
        if self.arena.len() < want {
            self.arena.resize(want, 0.0);
        }
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
        self.reserve(lens.iter().sum(), batch, scratch);
        let mut rest: &mut [f32] = &mut self.arena;
        let buffers = lens.map(|len| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len * batch);
            rest = tail;
            head
        });
        (buffers, &mut rest[..scratch], &self.team)
    }
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("threads", &self.team.threads())
            .field("floats", &self.arena.len())
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
}

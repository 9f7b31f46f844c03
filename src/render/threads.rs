//! What each render thread has of its own, so that threads rendering at once never write
//! to the same memory: a compiled copy of the templates (with its own memory of the dates
//! it has written, `dates::Written`).
//!
//! Measured (BENCHMARKS.md, 2026-11-27 and "render/" of 2026-12-01): with one shared copy
//! the two render threads bumped the same reference counts (the globals, the incident's
//! texts) for every variable printed, 3.4 s of CPU on two cores against 2.3 s on one.
//! A per-thread source of hash-map seeds for ahash, kept here before, was dropped: three
//! same-window comparisons on 2026-12-01 showed no difference (BENCHMARKS.md, "render/").

use tera::Tera;

/// At most this many threads render at once, each with its own compiled copy of the
/// templates.
pub const MAX_RENDER_THREADS: usize = 8;

/// How many threads render at once (`Mailing::pipeline`'s workers): one per core.
pub fn render_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_RENDER_THREADS)
}

/// The compiled copies: copy 0 for any thread that renders now and then (status, a test
/// send's first row), then one per render worker, handed to it by `Templates::renderer`.
pub(super) struct Copies(Vec<Tera>);

impl Copies {
    /// `compile` once for every copy.
    pub(super) fn new<E>(mut compile: impl FnMut() -> Result<Tera, E>) -> Result<Copies, E> {
        (0..=render_threads())
            .map(|_| compile())
            .collect::<Result<Vec<_>, E>>()
            .map(Copies)
    }

    /// The copy for occasional use from any thread.
    pub(super) fn shared(&self) -> &Tera {
        &self.0[0]
    }

    /// Worker `worker`'s own copy.
    pub(super) fn worker(&self, worker: usize) -> &Tera {
        let i = 1 + worker % (self.0.len() - 1).max(1);
        self.0.get(i).unwrap_or(&self.0[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_has_a_copy_of_its_own() {
        let copies = Copies::new(|| Ok::<_, ()>(Tera::new())).expect("copies");
        let n = render_threads();
        let mut seen = vec![copies.shared() as *const Tera];
        for w in 0..n {
            let copy = copies.worker(w) as *const Tera;
            assert!(!seen.contains(&copy), "worker {w} shares a copy");
            seen.push(copy);
        }
        // A worker number beyond the copies wraps around instead of failing.
        assert!(!std::ptr::eq(copies.worker(n), copies.shared()));
    }
}

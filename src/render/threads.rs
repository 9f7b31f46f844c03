//! What each render thread has of its own, so that threads rendering at once never write
//! to the same memory: a compiled copy of the templates, and the seeds of the hash maps
//! Tera makes while rendering.
//!
//! Measured (BENCHMARKS.md, 2026-11-27 and "render/" of 2026-12-01): with one shared copy
//! the two render threads bumped the same reference counts (the globals, the incident's
//! texts) for every variable printed, 3.4 s of CPU on two cores against 2.3 s on one.

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

/// Where ahash takes the part of each new map's hash keys that tells it from other maps
/// (the rest is random per process, from the OS). Tera makes an ahash map for every filter
/// call with arguments and every loop, a dozen per message; ahash's own source is one
/// atomic counter for the whole process, which the render threads then fight over for
/// every map. A counter per thread, started from an address that differs per thread,
/// serves as well.
struct ThreadSeeds;

impl ahash::random_state::RandomSource for ThreadSeeds {
    fn gen_hasher_seed(&self) -> usize {
        thread_local! {
            static NEXT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        }
        NEXT.with(|next| {
            let mut seed = next.get();
            if seed == 0 {
                seed = next as *const _ as usize;
            }
            // An odd step visits every value before it repeats.
            next.set(seed.wrapping_add(0x9E37_79B9_7F4A_7C15_u64 as usize));
            seed
        })
    }
}

/// Makes every thread seed its hash maps from its own counter (`ThreadSeeds`). Call it
/// before the first hash map is made; later, it leaves ahash's own source, which is merely
/// slower.
pub fn seed_hash_maps_per_thread() {
    let _ = ahash::random_state::set_random_source(ThreadSeeds);
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

    #[test]
    fn seeds_differ_from_map_to_map() {
        use ahash::random_state::RandomSource;
        let a = ThreadSeeds.gen_hasher_seed();
        let b = ThreadSeeds.gen_hasher_seed();
        assert_ne!(a, b);
        let other = std::thread::spawn(|| ThreadSeeds.gen_hasher_seed())
            .join()
            .expect("thread");
        assert_ne!(other, a);
        assert_ne!(other, b);
    }
}

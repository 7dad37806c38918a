//! Pass 1 of linking on every core: the connected components of the record graph,
//! ignoring limits, with a lock-free union-find.
//!
//! Each thread links a share of the identifiers. A root is linked under another by a
//! compare-and-swap of its own parent slot, always the larger index under the smaller,
//! so parents only ever decrease and no cycle can form; a failed swap means the root was
//! linked meanwhile, and the union starts again from the new roots. Finds halve paths
//! with a swap that may fail harmlessly. Since parents only decrease, each component's
//! root is its smallest node, whatever the threads' timing (`resolve` relies on it: a
//! component's first record in output order is its root).

use std::sync::atomic::{AtomicU32, Ordering};

/// Below this many nodes one thread does it all (threads cost more than they save).
const PARALLEL_FROM: usize = 1 << 16;

/// The root of every node, after linking each node to `canon[node]` and the members of
/// every identifier `i` with `linked(i)` (`members[starts[i]..starts[i + 1]]`).
pub fn roots(
    canon: &[u32],
    starts: &[u32],
    members: &[u32],
    linked: impl Fn(usize) -> bool + Sync,
    threads: usize,
) -> Vec<u32> {
    let n = canon.len();
    let idents = starts.len().saturating_sub(1);
    let threads = if n < PARALLEL_FROM { 1 } else { threads.max(1) };
    let parent: Vec<AtomicU32> = (0..n as u32).map(AtomicU32::new).collect();
    let share = |t: usize, len: usize| t * len / threads..(t + 1) * len / threads;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (parent, linked) = (&parent, &linked);
            scope.spawn(move || {
                for o in share(t, n) {
                    let c = canon[o];
                    if c as usize != o {
                        union(parent, c, o as u32);
                    }
                }
                for i in share(t, idents) {
                    if !linked(i) {
                        continue;
                    }
                    let m = &members[starts[i] as usize..starts[i + 1] as usize];
                    if let Some((&first, rest)) = m.split_first() {
                        for &r in rest {
                            union(parent, first, r);
                        }
                    }
                }
            });
        }
    });
    let mut roots = vec![0u32; n];
    std::thread::scope(|scope| {
        let mut rest: &mut [u32] = &mut roots;
        for t in 0..threads {
            let range = share(t, n);
            let (mine, tail) = rest.split_at_mut(range.len());
            rest = tail;
            let parent = &parent;
            scope.spawn(move || {
                for (slot, o) in mine.iter_mut().zip(range) {
                    *slot = find(parent, o as u32);
                }
            });
        }
    });
    roots
}

fn find(parent: &[AtomicU32], mut x: u32) -> u32 {
    loop {
        let p = parent[x as usize].load(Ordering::Acquire);
        if p == x {
            return x;
        }
        let grand = parent[p as usize].load(Ordering::Acquire);
        if grand != p {
            let _ =
                parent[x as usize].compare_exchange(p, grand, Ordering::AcqRel, Ordering::Relaxed);
        }
        x = grand;
    }
}

fn union(parent: &[AtomicU32], a: u32, b: u32) {
    let (mut a, mut b) = (a, b);
    loop {
        a = find(parent, a);
        b = find(parent, b);
        if a == b {
            return;
        }
        let (high, low) = if a > b { (a, b) } else { (b, a) };
        if parent[high as usize]
            .compare_exchange(high, low, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Components of a random graph, on one thread and on four, against a plain
    /// sequential union-find.
    #[test]
    fn parallel_components_equal_sequential_ones() {
        let n = 200_000usize;
        let mut state = 42u64;
        let mut next = |below: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as usize) % below
        };
        let canon: Vec<u32> = (0..n)
            .map(|o| {
                if o % 7 == 3 {
                    next(o + 1) as u32
                } else {
                    o as u32
                }
            })
            .collect();
        let (mut starts, mut members) = (vec![0u32], Vec::new());
        for _ in 0..n / 3 {
            for _ in 0..1 + next(4) {
                members.push(next(n) as u32);
            }
            starts.push(members.len() as u32);
        }
        let skipped = |i: usize| i % 11 != 5;
        // Sequential reference.
        let mut p: Vec<usize> = (0..n).collect();
        fn f(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        let join = |p: &mut Vec<usize>, a: usize, b: usize| {
            let (a, b) = (f(p, a), f(p, b));
            p[a.max(b)] = a.min(b);
        };
        for (o, &c) in canon.iter().enumerate() {
            join(&mut p, o, c as usize);
        }
        for i in (0..starts.len() - 1).filter(|i| skipped(*i)) {
            let m = &members[starts[i] as usize..starts[i + 1] as usize];
            for &r in &m[1..] {
                join(&mut p, m[0] as usize, r as usize);
            }
        }
        let expected: Vec<u32> = (0..n).map(|o| f(&mut p, o) as u32).collect();
        for threads in [1, 4] {
            let got = roots(&canon, &starts, &members, skipped, threads);
            // Linking always keeps the smaller index, so roots are each component's
            // smallest node whatever the order.
            assert_eq!(got, expected, "{threads} threads");
        }
    }
}

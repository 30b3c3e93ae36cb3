//! A Merkle tree over the log in RFC 9162 style (Certificate Transparency 2.0, §2.1).
//!
//! - `MTH({}) = SHA-256()`, `MTH({d}) = SHA-256(0x00 || d)`,
//!   `MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))` with `k` the largest power of two `< n`.
//! - Inclusion proofs (`PATH`) and consistency proofs (`PROOF`/`SUBPROOF`) exactly as the RFC defines them,
//!   and its verification algorithms (§2.1.3.2, §2.1.4.2).
//!
//! Proofs are generated over a [`Nodes`] source that answers the hash of any *perfect aligned* subtree
//! (`2^level` leaves starting at a multiple of `2^level`); every subtree the RFC's recursion needs is either
//! such a node or splits into them, so a source that stores those nodes answers in `O(log² n)` lookups.
//! [`MemoryTree`] keeps them all in memory; [`ChunkedTree`] keeps those above a chunk size and has the
//! leaves of a chunk read again when a proof needs them.

use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly less than `n` (`n ≥ 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Where proofs get the hashes of perfect aligned subtrees from.
pub trait Nodes {
    /// How many leaves the source holds.
    fn size(&self) -> u64;
    /// The hash of leaves `[index·2^level, (index+1)·2^level)`; only asked for subtrees inside `size()`.
    fn node(&self, level: u32, index: u64) -> Hash;
}

/// `MTH(D[start:end])`.
pub fn subtree_root(nodes: &impl Nodes, start: u64, end: u64) -> Hash {
    let n = end - start;
    if n == 0 {
        return empty_root();
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    let k = split(n);
    node_hash(&subtree_root(nodes, start, start + k), &subtree_root(nodes, start + k, end))
}

/// The root of the first `size` leaves (`size ≤ nodes.size()`).
pub fn root(nodes: &impl Nodes, size: u64) -> Hash {
    assert!(size <= nodes.size(), "root of {size} leaves asked of a tree of {}", nodes.size());
    subtree_root(nodes, 0, size)
}

/// The inclusion proof of leaf `index` (0-based) in the tree of the first `size` leaves: RFC 9162
/// `PATH(index, D[size])`, ordered from the leaf up. `None` if `index ≥ size` or `size > nodes.size()`.
pub fn inclusion_proof(nodes: &impl Nodes, index: u64, size: u64) -> Option<Vec<Hash>> {
    if index >= size || size > nodes.size() {
        return None;
    }
    let mut out = Vec::new();
    path(nodes, index, 0, size, &mut out);
    Some(out)
}

fn path(nodes: &impl Nodes, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
    let n = end - start;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(nodes, m, start, start + k, out);
        out.push(subtree_root(nodes, start + k, end));
    } else {
        path(nodes, m - k, start + k, end, out);
        out.push(subtree_root(nodes, start, start + k));
    }
}

/// The consistency proof between the trees of the first `first` and `second` leaves: RFC 9162
/// `PROOF(first, D[second])`. Empty when `first` is 0 or equals `second`; `None` if `first > second` or
/// `second > nodes.size()`.
pub fn consistency_proof(nodes: &impl Nodes, first: u64, second: u64) -> Option<Vec<Hash>> {
    if first > second || second > nodes.size() {
        return None;
    }
    let mut out = Vec::new();
    if first > 0 && first < second {
        subproof(nodes, first, 0, second, true, &mut out);
    }
    Some(out)
}

fn subproof(nodes: &impl Nodes, m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Hash>) {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(subtree_root(nodes, start, end));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, start + k, whole, out);
        out.push(subtree_root(nodes, start + k, end));
    } else {
        subproof(nodes, m - k, start + k, end, false, out);
        out.push(subtree_root(nodes, start, start + k));
    }
}

/// RFC 9162 §2.1.3.2: does `proof` show that `leaf` is leaf `index` of the tree of `size` leaves with `root`?
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `first` leaves with `first_root` is a prefix of the
/// tree of `second` leaves with `second_root`? (Equal sizes need an empty proof and equal roots; the empty
/// tree is a prefix of every tree.)
pub fn verify_consistency(first: u64, second: u64, first_root: &Hash, second_root: &Hash, proof: &[Hash]) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

/// Every perfect aligned subtree of the leaves pushed so far, in memory (about 64 bytes per leaf).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is the node of level `l` at index `i`; `levels[0]` are the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// A tree over `leaves` (leaf hashes, in order).
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> MemoryTree {
        let mut tree = MemoryTree::default();
        leaves.into_iter().for_each(|l| tree.push(l));
        tree
    }

    /// Appends one leaf hash and completes the subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut hash = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let i = self.levels[level].len() - 1;
            if i.is_multiple_of(2) {
                return;
            }
            hash = node_hash(&self.levels[level][i - 1], &hash);
            level += 1;
        }
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<&Hash> {
        self.levels.first()?.get(usize::try_from(index).ok()?)
    }

    /// The root of all leaves.
    pub fn root(&self) -> Hash {
        root(self, self.size())
    }
}

impl Nodes for MemoryTree {
    fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    fn node(&self, level: u32, index: u64) -> Hash {
        self.levels[level as usize][index as usize]
    }
}

/// The root of a perfect subtree given all its leaves (`leaves.len()` a power of two).
pub fn perfect_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        1 => leaves[0],
        n => node_hash(&perfect_root(&leaves[..n / 2]), &perfect_root(&leaves[n / 2..])),
    }
}

/// A Merkle index that keeps the roots of aligned chunks of `2^bits` leaves (their perfect subtrees) and
/// the leaves of the last, unfinished chunk — about a sixtieth of a [`MemoryTree`] with 64-leaf chunks. A
/// root or proof needs the leaves of at most a few finished chunks; [`ChunkedTree::with`] names them, and
/// the caller reads them again from where they came from (the log).
#[derive(Debug, Clone)]
pub struct ChunkedTree {
    bits: u32,
    /// One leaf per finished chunk: its root.
    chunks: MemoryTree,
    /// Leaves of the unfinished chunk.
    open: Vec<Hash>,
}

impl ChunkedTree {
    /// An empty tree with chunks of `2^bits` leaves.
    pub fn new(bits: u32) -> ChunkedTree {
        ChunkedTree { bits, chunks: MemoryTree::default(), open: Vec::new() }
    }

    /// A tree of the finished chunks with these roots (kept from an earlier run).
    pub fn resume(bits: u32, roots: impl IntoIterator<Item = Hash>) -> ChunkedTree {
        ChunkedTree { bits, chunks: MemoryTree::from_leaves(roots), open: Vec::new() }
    }

    /// How many chunks are finished.
    pub fn finished(&self) -> u64 {
        self.chunks.size()
    }

    /// The root of finished chunk `chunk`.
    pub fn chunk_root(&self, chunk: u64) -> Option<Hash> {
        self.chunks.leaf(chunk).copied()
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.open.push(leaf);
        if self.open.len() == 1 << self.bits {
            self.chunks.push(perfect_root(&self.open));
            self.open.clear();
        }
    }

    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        (self.chunks.size() << self.bits) + self.open.len() as u64
    }

    /// The leaf indexes `[first, first + 2^bits)` of chunk `chunk`.
    pub fn chunk_leaves(&self, chunk: u64) -> std::ops::Range<u64> {
        chunk << self.bits..(chunk + 1) << self.bits
    }

    /// The tree with the leaves of some finished chunks at hand, as [`Nodes`] for [`root`] and the proofs.
    /// A node inside a finished chunk that is not in `loaded` reads as zeros and the chunk is listed by
    /// [`WithChunks::missing`]: load those and compute again.
    pub fn with<'a>(&'a self, loaded: &'a HashMap<u64, Vec<Hash>>) -> WithChunks<'a> {
        WithChunks { tree: self, loaded, missing: RefCell::new(BTreeSet::new()) }
    }
}

/// A [`ChunkedTree`] and the leaves of some of its chunks.
pub struct WithChunks<'a> {
    tree: &'a ChunkedTree,
    loaded: &'a HashMap<u64, Vec<Hash>>,
    missing: RefCell<BTreeSet<u64>>,
}

impl WithChunks<'_> {
    /// Finished chunks whose leaves were asked for but not at hand.
    pub fn missing(self) -> Vec<u64> {
        self.missing.into_inner().into_iter().collect()
    }
}

impl Nodes for WithChunks<'_> {
    fn size(&self) -> u64 {
        self.tree.size()
    }

    fn node(&self, level: u32, index: u64) -> Hash {
        let bits = self.tree.bits;
        if level >= bits {
            return self.tree.chunks.node(level - bits, index);
        }
        let first = index << level;
        let chunk = first >> bits;
        let leaves = if chunk == self.tree.chunks.size() {
            &self.tree.open
        } else if let Some(leaves) = self.loaded.get(&chunk) {
            leaves
        } else {
            self.missing.borrow_mut().insert(chunk);
            return [0; 32];
        };
        let at = (first - (chunk << bits)) as usize;
        perfect_root(&leaves[at..at + (1 << level)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The RFC's definitions, written naively over the leaf data: what the efficient code must equal.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return Vec::new();
        }
        let k = split(d.len() as u64) as usize;
        if m < k {
            let mut p = naive_path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = naive_path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        if m == d.len() {
            return if b { Vec::new() } else { vec![mth(d)] };
        }
        let k = split(d.len() as u64) as usize;
        if m <= k {
            let mut p = naive_subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = naive_subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("leaf {i}").as_bytes())).collect()
    }

    #[test]
    fn known_roots() {
        assert_eq!(
            crate::hex_text::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 6962 test vector: the leaf of the empty string.
        assert_eq!(
            crate::hex_text::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let t = MemoryTree::from_leaves(leaves(3));
        let l = leaves(3);
        assert_eq!(t.root(), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
    }

    #[test]
    fn proofs_equal_the_rfc_definitions_for_every_small_tree() {
        for n in 1..=33usize {
            let d = leaves(n);
            let t = MemoryTree::from_leaves(d.clone());
            assert_eq!(t.root(), mth(&d), "root of {n}");
            for size in 1..=n {
                let r = root(&t, size as u64);
                assert_eq!(r, mth(&d[..size]));
                for m in 0..size {
                    let p = inclusion_proof(&t, m as u64, size as u64).unwrap();
                    assert_eq!(p, naive_path(m, &d[..size]), "PATH({m}, D[{size}])");
                    assert!(verify_inclusion(&d[m], m as u64, size as u64, &p, &r));
                    if size > 1 {
                        assert!(!verify_inclusion(&d[(m + 1) % size], m as u64, size as u64, &p, &r));
                    }
                }
                for first in 1..=size {
                    let p = consistency_proof(&t, first as u64, size as u64).unwrap();
                    let expected = if first == size { Vec::new() } else { naive_subproof(first, &d[..size], true) };
                    assert_eq!(p, expected, "PROOF({first}, D[{size}])");
                    let fr = mth(&d[..first]);
                    assert!(verify_consistency(first as u64, size as u64, &fr, &r, &p), "{first}→{size}");
                    if first < size {
                        let wrong = mth(&d[1..first + 1]);
                        assert!(!verify_consistency(first as u64, size as u64, &wrong, &r, &p));
                    }
                }
            }
        }
    }

    /// Computes `f` over a chunked tree the way a service does: with no chunk at hand first, then with the
    /// chunks it reported missing, until none is; returns the answer and the chunks it loaded.
    fn over_chunks<T>(t: &ChunkedTree, d: &[Hash], f: impl Fn(&WithChunks) -> T) -> (T, usize) {
        let mut loaded = HashMap::new();
        loop {
            let view = t.with(&loaded);
            let answer = f(&view);
            let missing = view.missing();
            if missing.is_empty() {
                return (answer, loaded.len());
            }
            for chunk in missing {
                let range = t.chunk_leaves(chunk);
                loaded.insert(chunk, d[range.start as usize..range.end as usize].to_vec());
            }
        }
    }

    #[test]
    fn a_chunked_tree_answers_like_a_memory_tree_with_a_few_chunks_loaded() {
        for bits in [0, 1, 3] {
            for n in 1..=40usize {
                let d = leaves(n);
                let (full, mut chunked) = (MemoryTree::from_leaves(d.clone()), ChunkedTree::new(bits));
                d.iter().for_each(|l| chunked.push(*l));
                assert_eq!(chunked.size(), n as u64);
                // Resuming from the finished chunks' roots and pushing the rest gives the same tree.
                let mut resumed =
                    ChunkedTree::resume(bits, (0..chunked.finished()).map(|c| chunked.chunk_root(c).unwrap()));
                d[resumed.size() as usize..].iter().for_each(|l| resumed.push(*l));
                assert_eq!((resumed.size(), &resumed.open), (chunked.size(), &chunked.open));
                assert_eq!(resumed.chunks, chunked.chunks);
                for size in 1..=n as u64 {
                    let (r, _) = over_chunks(&chunked, &d, |v| root(v, size));
                    assert_eq!(r, root(&full, size), "root of {size} (bits {bits})");
                    for m in 0..size {
                        let (p, loads) = over_chunks(&chunked, &d, |v| inclusion_proof(v, m, size));
                        assert_eq!(p, inclusion_proof(&full, m, size), "PATH({m}, {size}) bits {bits}");
                        assert!(loads <= 2, "{loads} chunks for one inclusion proof");
                        let (p, loads) = over_chunks(&chunked, &d, |v| consistency_proof(v, m + 1, size));
                        assert_eq!(p, consistency_proof(&full, m + 1, size), "PROOF({}, {size}) bits {bits}", m + 1);
                        assert!(loads <= 3, "{loads} chunks for one consistency proof");
                    }
                }
            }
        }
    }

    #[test]
    fn out_of_range_requests_have_no_proof() {
        let t = MemoryTree::from_leaves(leaves(5));
        assert!(inclusion_proof(&t, 5, 5).is_none());
        assert!(inclusion_proof(&t, 0, 6).is_none());
        assert!(consistency_proof(&t, 4, 3).is_none());
        assert_eq!(consistency_proof(&t, 0, 5), Some(Vec::new()));
        assert!(verify_consistency(0, 5, &empty_root(), &t.root(), &[]));
        assert!(!verify_inclusion(&leaves(1)[0], 0, 0, &[], &empty_root()));
    }

    proptest! {
        #[test]
        fn any_proof_verifies_and_any_change_breaks_it(n in 1u64..300, a in 0u64..300, b in 0u64..300, flip in 0usize..32) {
            let d = leaves(n as usize);
            let t = MemoryTree::from_leaves(d.clone());
            let (m, size) = (a % n, 1 + b % n);
            let first = 1 + a % size;
            if m < size {
                let r = root(&t, size);
                let mut p = inclusion_proof(&t, m, size).unwrap();
                prop_assert!(verify_inclusion(&d[m as usize], m, size, &p, &r));
                if let Some(h) = p.first_mut() {
                    h[flip] ^= 1;
                    prop_assert!(!verify_inclusion(&d[m as usize], m, size, &p, &r));
                }
            }
            let p = consistency_proof(&t, first, size).unwrap();
            let (fr, sr) = (root(&t, first), root(&t, size));
            prop_assert!(verify_consistency(first, size, &fr, &sr, &p));
            let mut bad = sr;
            bad[flip] ^= 1;
            prop_assert!(!verify_consistency(first, size, &fr, &bad, &p));
        }
    }
}

//! The vendored sled writes a batch's manifest in the same buffer as the batch (vendor/sled/RECTIFY.md):
//! batches under a page cache far too small for them, with readers and flushes alongside, must neither hang
//! (a read that pulls a page back from the open batch's buffer would wait for it forever) nor tear.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const KEYS: u32 = 5_000;

fn open(dir: &std::path::Path) -> sled::Db {
    // 64 KiB of cache: nearly every page a batch touches is evicted while the batch goes on.
    // `sled_open` waits for the lock of the handle dropped just before reopening (sled's threads hold it).
    let config = sled::Config::new().path(dir).cache_capacity(64 << 10).segment_size(64 << 10).flush_every_ms(Some(1));
    rectify_eventlog::sled_open::open(&config).unwrap()
}

fn value(round: u32, k: u32) -> Vec<u8> {
    vec![(round % 251) as u8; 200 + (k as usize % 300)]
}

#[test]
fn batches_under_a_tiny_cache_neither_hang_nor_tear() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u32)
        .map(|r| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    db.get(((n.wrapping_mul(7919) + r) % KEYS).to_be_bytes()).unwrap();
                    if n.is_multiple_of(500) {
                        db.range(0u32.to_be_bytes()..100u32.to_be_bytes()).for_each(|kv| drop(kv.unwrap()));
                    }
                    if n.is_multiple_of(2_000) {
                        db.flush().unwrap();
                    }
                    n += 1;
                }
            })
        })
        .collect();

    // Batches for 5 s on a thread of their own; each one reports, so a batch that hangs is seen.
    let (done, batches) = mpsc::channel();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut round = 0;
            while started.elapsed() < Duration::from_secs(5) {
                let mut batch = sled::Batch::default();
                for k in 0..1_000 {
                    batch.insert(&((k * 5 + round) % KEYS).to_be_bytes(), value(round, k));
                }
                batch.insert(b"round", &round.to_be_bytes());
                db.apply_batch(batch).unwrap();
                if round.is_multiple_of(10) {
                    db.flush().unwrap();
                }
                done.send(round).unwrap();
                round += 1;
            }
        })
    };
    let mut last = None;
    loop {
        match batches.recv_timeout(Duration::from_secs(30)) {
            Ok(round) => last = Some(round),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("a batch hung (after round {last:?})"),
        }
    }
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    readers.into_iter().for_each(|r| r.join().unwrap());
    let last = last.expect("no batch ran");
    assert!(last > 10, "only {last} batches in 5 s");
    db.flush().unwrap();
    drop(db);

    // Opened again, the last batch is whole.
    let db = open(dir.path());
    assert_eq!(db.get(b"round").unwrap().as_deref(), Some(&last.to_be_bytes()[..]));
    for k in 0..1_000 {
        assert_eq!(db.get(((k * 5 + last) % KEYS).to_be_bytes()).unwrap(), Some(value(last, k).into()));
    }
    db.verify_integrity().unwrap();
}

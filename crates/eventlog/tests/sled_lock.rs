//! Two sled databases in one process (the views of `rectify rebuild` beside the current ones, the bench's
//! replay beside the views): a batch applied to one must not stop the readers of the other
//! (vendor/sled/RECTIFY.md; upstream sled shares one lock between them).

use std::sync::mpsc;
use std::time::Duration;

#[test]
fn a_batch_in_one_database_leaves_another_databases_readers_alone() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let busy = sled::Config::new().path(dirs.0.path()).open().unwrap();
    let other = sled::Config::new().path(dirs.1.path()).open().unwrap();
    other.insert(b"k", b"v".to_vec()).unwrap();

    // sled hands each write to a subscriber through a channel of 1,024 events and waits while it is full:
    // a batch of more writes than that, watched by nobody reading, stays applied halfway, holding its lock.
    let mut watcher = busy.watch_prefix(vec![]);
    let writer = {
        let busy = busy.clone();
        std::thread::spawn(move || {
            let mut batch = sled::Batch::default();
            for i in 0u32..2_000 {
                batch.insert(&i.to_be_bytes(), b"x".to_vec());
            }
            busy.apply_batch(batch).unwrap();
        })
    };
    // The first write is seen: the batch is being applied.
    assert!(watcher.next().is_some());

    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || tx.send(other.get(b"k").unwrap()).unwrap());
    let read = rx.recv_timeout(Duration::from_secs(30));

    // Let the batch finish (before asserting, so that a failure does not leave it holding its lock).
    for _ in 1..2_000 {
        assert!(watcher.next().is_some());
    }
    writer.join().unwrap();
    reader.join().unwrap();
    assert_eq!(read.expect("the other database's read waited for the batch").as_deref(), Some(&b"v"[..]));
    assert_eq!(busy.len(), 2_000);
}

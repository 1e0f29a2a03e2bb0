//! The SQLite queues: delays, visibility, receipts, redrive after 3 receives.

use spotrunner_local::{Db, MAX_RECEIVES, SqliteQueue};
use std::time::Duration;

fn queues() -> (tempfile::TempDir, SqliteQueue, SqliteQueue) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("q.db")).expect("open");
    let jobs = SqliteQueue::new(db.clone(), "jobs").with_dead_letter("dlq", MAX_RECEIVES);
    let dlq = SqliteQueue::new(db, "dlq");
    (dir, jobs, dlq)
}

#[test]
fn receive_hides_delete_needs_the_current_receipt() {
    let (_d, q, _) = queues();
    q.send("a", Duration::ZERO).unwrap();
    q.send("b", Duration::ZERO).unwrap();
    let got = q.receive(10, Duration::from_secs(60)).unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(q.receive(10, Duration::from_secs(60)).unwrap().is_empty());
    assert_eq!(q.depth().unwrap().not_visible, 2);
    assert!(q.delete(&got[0].receipt).unwrap());
    assert!(
        !q.delete(&got[0].receipt).unwrap(),
        "a second delete is a no-op"
    );
    // Made visible again: the old receipt no longer deletes it.
    assert!(
        q.change_visibility(&got[1].receipt, Duration::ZERO)
            .unwrap()
    );
    let again = q.receive(10, Duration::from_secs(60)).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    assert!(!q.delete(&got[1].receipt).unwrap());
    assert!(q.delete(&again[0].receipt).unwrap());
    assert_eq!(q.depth().unwrap(), Default::default());
}

#[test]
fn delayed_messages_wait() {
    let (_d, q, _) = queues();
    q.send("later", Duration::from_secs(3600)).unwrap();
    q.send("now", Duration::ZERO).unwrap();
    let got = q.receive(10, Duration::from_secs(60)).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "now");
    assert_eq!(q.depth().unwrap().visible, 0);
    assert_eq!(q.depth().unwrap().not_visible, 2);
}

#[test]
fn third_receive_without_delete_is_the_last_then_dlq() {
    let (_d, q, dlq) = queues();
    q.send("poison", Duration::ZERO).unwrap();
    for n in 1..=MAX_RECEIVES {
        let got = q.receive(1, Duration::ZERO).unwrap();
        assert_eq!(got.len(), 1, "receive {n}");
        assert_eq!(got[0].receive_count, n);
    }
    assert!(q.receive(1, Duration::ZERO).unwrap().is_empty());
    let dead = dlq.list().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    // A redrive moves it back with a fresh count.
    assert!(dlq.move_to(dead[0].message_id, "jobs", "poison").unwrap());
    let back = q.receive(1, Duration::ZERO).unwrap();
    assert_eq!(back[0].receive_count, 1);
}

#[test]
fn messages_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q.db");
    {
        let q = SqliteQueue::new(Db::open(&path).unwrap(), "jobs");
        q.send("kept", Duration::ZERO).unwrap();
        q.receive(1, Duration::ZERO).unwrap();
    }
    let q = SqliteQueue::new(Db::open(&path).unwrap(), "jobs");
    let got = q.receive(1, Duration::ZERO).unwrap();
    assert_eq!(got[0].body, "kept");
    assert_eq!(got[0].receive_count, 2);
}

//! The clock's own tests: fixed instants only. That the machine's date can
//! move under the whole suite is `tests/moved_clock.rs`.

use super::*;

fn t0() -> DateTime<Utc> {
    "2026-11-26T10:00:00Z".parse().unwrap()
}

#[test]
fn a_manual_clock_moves_only_when_told() {
    let c = ManualClock::new(t0());
    assert_eq!(c.now(), t0());
    c.advance(chrono::Duration::hours(25));
    assert_eq!(c.now(), t0() + chrono::Duration::hours(25));
    c.advance(-chrono::Duration::hours(25));
    assert_eq!(c.now(), t0());
}

#[test]
fn elapsed_moves_a_fixed_start_on_by_the_time_spent_only() {
    let e = Elapsed::start(t0());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let at = e.at();
    assert!(at >= t0() + chrono::Duration::milliseconds(20), "{at}");
    // However late the machine's date, a fixed start stays near itself.
    assert!(at < t0() + chrono::Duration::minutes(1), "{at}");
    assert_eq!(e.started_at(), t0());
}

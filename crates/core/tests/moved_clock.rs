//! `scripts/test-moved-clock.sh` runs this first, under libfaketime, with the
//! real time in `SPOTRUNNER_REAL_NOW`: a moved-clock run whose clock did not
//! move would prove nothing. Wall clock only; no fixed instant.

use spotrunner_core::clock::{Clock, SystemClock};

#[test]
#[ignore = "run by scripts/test-moved-clock.sh under libfaketime"]
fn the_moved_clock_run_sees_a_date_a_year_ahead() {
    let real: i64 = std::env::var("SPOTRUNNER_REAL_NOW")
        .expect("SPOTRUNNER_REAL_NOW (epoch seconds) is set by scripts/test-moved-clock.sh")
        .parse()
        .expect("SPOTRUNNER_REAL_NOW is epoch seconds");
    let ahead = SystemClock.now().timestamp() - real;
    assert!(
        ahead > 300 * 86_400,
        "the clock is only {ahead} s ahead of the real time: libfaketime is not in effect"
    );
}

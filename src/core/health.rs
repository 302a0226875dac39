//! The pure part of health checking: the `rise` / `fall` state machine and what counts as a
//! good probe answer. The probe loop itself lives in `control::health`.

use http::StatusCode;

/// Consecutive-result state machine: `fall` failures in a row take an up node down, `rise`
/// successes in a row bring a down node up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsecutiveCounter {
    rise: u32,
    fall: u32,
    up: bool,
    /// Results in a row that disagree with `up`.
    streak: u32,
}

impl ConsecutiveCounter {
    pub fn new(rise: u32, fall: u32, up: bool) -> Self {
        ConsecutiveCounter {
            rise: rise.max(1),
            fall: fall.max(1),
            up,
            streak: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one check; `Some(new_state)` when the node changes state.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

/// Is `status` a good answer?
pub fn status_ok(status: StatusCode, expect: &[u16]) -> bool {
    if expect.is_empty() {
        status.is_success()
    } else {
        expect.contains(&status.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_counter_table() {
        type Case = (u32, u32, bool, &'static [bool], &'static [Option<bool>]);
        let cases: &[Case] = &[
            (
                2,
                3,
                true,
                &[false, false, false],
                &[None, None, Some(false)],
            ),
            (
                2,
                3,
                true,
                &[false, false, true, false, false, false],
                &[None, None, None, None, None, Some(false)],
            ),
            (2, 3, false, &[true, true], &[None, Some(true)]),
            (
                2,
                3,
                false,
                &[true, false, true, true],
                &[None, None, None, Some(true)],
            ),
            (
                1,
                1,
                true,
                &[false, true, false],
                &[Some(false), Some(true), Some(false)],
            ),
            (
                3,
                2,
                true,
                &[true, true, false, false, true, true, true],
                &[None, None, None, Some(false), None, None, Some(true)],
            ),
        ];
        for (i, (rise, fall, up, results, want)) in cases.iter().enumerate() {
            let mut c = ConsecutiveCounter::new(*rise, *fall, *up);
            let got: Vec<Option<bool>> = results.iter().map(|ok| c.record(*ok)).collect();
            assert_eq!(&got, want, "case {i}");
        }
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut c = ConsecutiveCounter::new(0, 0, true);
        assert_eq!(c.record(false), Some(false));
        assert_eq!(c.record(true), Some(true));
    }

    #[test]
    fn status_rules() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        assert!(status_ok(s(200), &[]));
        assert!(status_ok(s(204), &[]));
        assert!(!status_ok(s(301), &[]));
        assert!(!status_ok(s(503), &[]));
        assert!(status_ok(s(404), &[404]));
        assert!(!status_ok(s(200), &[204]));
    }
}

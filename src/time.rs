//! The crate's own time types. The core never reads a clock: the caller passes an [`Instant`]
//! from whatever clock it has (tokio, embassy, a simulator), measured from any fixed origin.

use core::fmt;

/// A point in time, in microseconds since an origin the caller chooses.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

/// A span of time in microseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Self = Self(0);
    /// From microseconds since the origin.
    #[must_use]
    pub const fn from_micros(us: u64) -> Self {
        Self(us)
    }
    /// From milliseconds since the origin.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1000))
    }
    /// Microseconds since the origin.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }
    /// `self + d`, saturating.
    #[must_use]
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.0))
    }
    /// `self - earlier`, or zero if `earlier` is later.
    #[must_use]
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    /// From microseconds.
    #[must_use]
    pub const fn from_micros(us: u64) -> Self {
        Self(us)
    }
    /// From milliseconds.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1000))
    }
    /// In microseconds.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}us", self.0)
    }
}
impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}us", self.0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn microseconds_in_and_out() {
        let t = Instant::from_millis(3).saturating_add(Duration::from_micros(7));
        assert_eq!(t.as_micros(), 3_007);
        assert_eq!(Duration::from_millis(2).as_micros(), 2_000);
        assert_eq!(
            t.saturating_duration_since(Instant::from_micros(7))
                .as_micros(),
            3_000
        );
        assert_eq!(format!("{t:?}"), "3007us");
        assert_eq!(format!("{:?}", Duration::from_micros(42)), "42us");
    }
}

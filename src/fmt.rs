//! Logging shim: the crate logs through `log`, `defmt`, or nowhere, chosen by feature.
//!
//! Format strings must use only `{}` / `{:?}` so both backends accept them; every argument
//! must implement `Debug` and (with `defmt`) `defmt::Format`.

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("features `defmt` and `log` are mutually exclusive: pick one logging backend");

macro_rules! log_at {
    ($lvl:ident, $($arg:tt)*) => {{
        #[cfg(feature = "log")]
        ::log::$lvl!($($arg)*);
        #[cfg(feature = "defmt")]
        ::defmt::$lvl!($($arg)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        { let _ = || { let _ = ::core::format_args!($($arg)*); }; }
    }};
}

macro_rules! trace { ($($arg:tt)*) => { log_at!(trace, $($arg)*) }; }
macro_rules! debug { ($($arg:tt)*) => { log_at!(debug, $($arg)*) }; }
macro_rules! info { ($($arg:tt)*) => { log_at!(info, $($arg)*) }; }
macro_rules! warn { ($($arg:tt)*) => { log_at!(warn, $($arg)*) }; }

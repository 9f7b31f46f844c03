//! Delivery status notifications on arbitrary bytes: classifying a message as a bounce,
//! a delay or nothing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = utskick::bounces::report::parse(data);
});

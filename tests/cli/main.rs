//! The integration tests: one binary driving the built `utskick` through `support::testenv`
//! against real SMTP servers on loopback (an in-process scriptable one, Postfix, smtp-sink).

mod support {
    pub mod daemon;
    pub mod dns;
    pub mod dovecot;
    pub mod flowed;
    pub mod postfix;
    pub mod smtp_server;
    pub mod testenv;
    pub mod tls;
}
mod bounces;
mod browser;
mod check;
mod errors;
mod hardening;
mod journal;
mod journey;
mod languages;
mod long;
mod operator;
mod preview;
mod protocol;
mod pushback;
mod recipients;
mod send;
mod support_selftest;

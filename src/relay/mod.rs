//! The company's SMTP relay: what it takes to reach it, what its replies mean, one
//! connection and its transactions, and the bytes a message goes out as.
//!
//! We drive lettre's `AsyncSmtpConnection` command by command instead of its pooled
//! transport, for three reasons: every step gets its own timeout (lettre's covers only
//! connecting); after a timeout or I/O error the connection is dropped, never reused with a
//! half-finished transaction; and we know whether DATA had gone out when a connection
//! broke, which decides between `failed-transient` (retry) and `unknown` (do not).
//!
//! Where the relay offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write
//! and their three replies are read in order: one round trip a message instead of three.

mod connection;
pub mod profile;
mod reply;
mod settings;
mod wire;

pub use connection::{ConnectError, Connection, Delivery, connect};
pub use reply::{Reply, Stage, Verdict, classify, enhanced_code};
pub use settings::{Settings, connect_failure, relay_settings};
pub use wire::Wire;

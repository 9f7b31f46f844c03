//! The delivery journal: the system of record of who was told.
//!
//! JSON Lines, append-only, one event a line, mode 0600. A recipient's state is its latest
//! event. Its concerns, one file each: the events' schema, shared by writer and reader
//! (`event`); the fold of events into where each recipient stands (`fold`); the parallel,
//! memory-mapped reader (`read`); the locks on the journal file (`lock`); and the one
//! writer with its group commit and torn tail (`writer`).
//!
//! Beyond the contract's events this journal has `unknown` (the connection was lost after
//! DATA: the outcome cannot be known), `deferred` (the relay, not the recipient, refused:
//! back to pending), `withdrawn` (an attempt journaled ahead whose message never went out:
//! back to the state before that attempt) and `end` (how a run ended).

mod event;
mod fold;
mod lock;
mod read;
#[cfg(test)]
mod sample;
mod writer;

pub use event::{Class, Event, Text, Unsent, event_key, new_run_id, now, timestamp};
pub use fold::{Journal, Run, Standing, State};
pub use lock::{is_locked, lock_path};
pub use writer::{Ticket, Writer};

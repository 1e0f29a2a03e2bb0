//! The ledger's rules, written once for every store.
//!
//! [`decide`] holds each operation as a pure function from the records read
//! to the changes to commit and the answer; [`engine`] makes every
//! [`crate::ports::LedgerStore`] (DynamoDB, SQLite, memory) a
//! [`crate::ports::Ledger`]: it reads, decides, commits the changes
//! conditionally on the versions read, and reads again after a lost race.

pub mod decide;
pub mod engine;

#[cfg(test)]
mod tests;

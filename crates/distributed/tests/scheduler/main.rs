//! The scheduler state machine, tested without a network.
//!
//! Every test builds a [`env::TestEnv`] (a scheduler, workers, clients, a
//! recording comm), submits one of the graphs of [`workflows`], plays the
//! workers' part by hand, and checks exactly which commands were sent
//! (`emptiness_check`). Every event is followed by `validate_state()`.
//! [`random`] drives random graphs through random cluster histories.

mod env;
mod workflows;

mod basics;
mod clients;
mod faults;
mod placement;
mod queuing;
mod random;
mod stealing;

//! m6-trainer

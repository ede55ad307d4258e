//! Commit in rounds: a task whose work never ends in one piece (a crawl: a seed list
//! that grows links for hours) commits its output round by round, each round a
//! sub-task of its own with its own shards and commit record, so a kill loses at
//! most the round in flight.
//!
//! Each round gets the same guarantees as a runner task: [`Rounds::begin`] first
//! removes whatever a killed attempt at that round left (uncommitted shards in the
//! main and side datasets, a commit-record temporary), and [`Rounds::commit`] makes the
//! round done in one rename of its commit record. The stage keeps only its own
//! resumable state; it never names a shard or commit file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::Result;
use crate::stage::{Counters, OutputSpec, TaskOutput};
use crate::writer::ShardLimits;
use crate::CommitRecord;

/// The rounds of one task into one output.
pub struct Rounds {
    output: PathBuf,
    spec: OutputSpec,
    limits: ShardLimits,
    task_id: String,
    tag: &'static str,
    inputs: Vec<String>,
}

impl Rounds {
    /// `tag` separates the round ids of different kinds of round-committing stages;
    /// `inputs` are the input labels every round's shards record.
    pub fn new(output: &Path, spec: OutputSpec, limits: ShardLimits, task_id: &str, tag: &'static str, inputs: Vec<String>) -> Self {
        Rounds { output: output.to_path_buf(), spec, limits, task_id: task_id.to_string(), tag, inputs }
    }

    /// Round `round`'s sub-task id (its commit record's name; the first 16 characters
    /// prefix its shards).
    pub fn id(&self, round: u64) -> String {
        round_id(&self.task_id, self.tag, round)
    }

    /// Whether round `round` is committed.
    pub fn is_committed(&self, round: u64) -> bool {
        CommitRecord::is_done(&self.output, &self.id(round))
    }

    /// Starts writing round `round`, after removing what a killed attempt at it left.
    pub fn begin(&self, round: u64) -> Result<TaskOutput> {
        let id = self.id(round);
        let short = &id[..id.len().min(16)];
        crate::runner::clean_leftovers(&self.output, &self.spec, &id, short)?;
        Ok(TaskOutput::new(&self.output, &self.spec, short, self.limits))
    }

    /// Commits round `round`: its shards move into place and its commit record is
    /// written. `refers_to`: the ids of earlier rounds (of this task or another) whose
    /// side shards this round's main rows point into ([`crate::ShardEntry::refers_to`]).
    pub fn commit(&self, round: u64, out: TaskOutput, started: Instant, refers_to: &[String]) -> Result<Counters> {
        crate::runner::commit(&self.output, &self.id(round), self.inputs.clone(), refers_to, out, started)
    }

    /// The shard files committed round `round` wrote into side dataset `side` (`""`:
    /// the main dataset); none when the round is not committed. A resumed task reads
    /// back what it wrote.
    pub fn shards(&self, round: u64, side: &str) -> Result<Vec<PathBuf>> {
        let Some(rec) = CommitRecord::load(&self.output, &self.id(round))? else { return Ok(vec![]) };
        let dir = if side.is_empty() { self.output.clone() } else { self.output.join(side) };
        Ok(rec.outputs.get(side).map(|v| v.iter().map(|s| dir.join(&s.file)).collect()).unwrap_or_default())
    }
}

/// The id of round `round` of task `task` (see [`Rounds::new`] for `tag`).
pub fn round_id(task: &str, tag: &str, round: u64) -> String {
    m6_schemas::content_id(&[task.as_bytes(), tag.as_bytes(), &round.to_le_bytes()])
}

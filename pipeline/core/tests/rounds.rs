//! Commit in rounds (`m6_pipeline::rounds`, what the crawler builds on): a round
//! begun again after a kill starts clean, and only committed rounds count.

use std::time::Instant;

use m6_pipeline::rounds::Rounds;
use m6_pipeline::{read_parquet, CommitRecord, OutputSpec, ShardLimits};
use m6_schemas::{Document, Kind, Reject};

fn docs(n: usize, round: u64) -> Vec<Document> {
    (0..n).map(|i| Document::new("round-test", Some(format!("r{round}-{i}")), None, None, format!("第{round}轮的第{i}篇文档，内容足够长。"), None)).collect()
}

#[test]
fn a_round_begun_again_removes_what_a_killed_attempt_left_and_commits_once() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    std::fs::create_dir_all(out.join("rejects")).unwrap();
    let spec = OutputSpec::new(Kind::Document).with_side("rejects", Kind::Reject);
    let limits = ShardLimits { shard_bytes: 4 << 10, ..Default::default() };
    let rounds = Rounds::new(&out, spec, limits, "task-a", "test-round", vec!["seeds.txt".into()]);
    assert_ne!(rounds.id(0), rounds.id(1));
    assert_ne!(rounds.id(0), Rounds::new(&out, OutputSpec::new(Kind::Document), limits, "task-b", "test-round", vec![]).id(0), "ids depend on the task");

    // Round 0 commits.
    let mut o = rounds.begin(0).unwrap();
    o.write_rows(&docs(30, 0)).unwrap();
    let c = rounds.commit(0, o, Instant::now(), &[]).unwrap();
    assert_eq!(c.rows_out, 30);
    assert!(rounds.is_committed(0) && !rounds.is_committed(1));

    // Round 1 is killed after its shards were finished but before its commit: what a
    // finished, uncommitted shard and a half-written commit record look like on disk.
    let id1 = rounds.id(1);
    let short = &id1[..16];
    let planted = [
        out.join(format!("part-{short}-00000.parquet")),
        out.join(format!(".tmp-{short}-00001.parquet")),
        out.join("rejects").join(format!("part-{short}-00000.parquet")),
        out.join("_commits").join(format!(".{id1}.json.999999.tmp")),
    ];
    for p in &planted {
        std::fs::write(p, b"half").unwrap();
    }
    // Round 0's files belong to a committed round and stay.
    let before: Vec<_> = CommitRecord::load_all(&out).unwrap();
    let mut o = rounds.begin(1).unwrap();
    for p in &planted {
        assert!(!p.exists(), "{} survived begin()", p.display());
    }
    for s in &before[0].outputs[""] {
        assert!(out.join(&s.file).exists(), "round 0's shard {} was removed", s.file);
    }
    o.write_rows(&docs(50, 1)).unwrap();
    o.write_side_rows("rejects", &[Reject { id: "r1-x".into(), source_id: None, source: "round-test".into(), rule: "rule".into(), value: 1.0, threshold: 0.5, snippet: None }]).unwrap();
    rounds.commit(1, o, Instant::now(), &[]).unwrap();
    assert!(rounds.is_committed(1));

    // Every committed shard reads back, and only committed rows exist.
    let records = CommitRecord::load_all(&out).unwrap();
    assert_eq!(records.len(), 2);
    let mut rows = 0;
    for r in &records {
        for s in &r.outputs[""] {
            for b in read_parquet(&out.join(&s.file), Some(Kind::Document), 64).unwrap() {
                rows += b.unwrap().num_rows();
            }
        }
    }
    assert_eq!(rows, 80);
    let on_disk = std::fs::read_dir(&out).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".parquet")).count();
    assert_eq!(on_disk, records.iter().map(|r| r.outputs[""].len()).sum::<usize>(), "no stray shard files");
}

//! Decoding what the log hands back never panics, whatever the bytes: arbitrary bytes, byte flips of real
//! commits, and JSON mutations of real commits (extreme numbers, wrong types, missing and extra fields). A
//! commit that does decode encodes back to bytes that decode to the same commit, and checking its hash chain
//! and folding it into a state never panic either. The same holds for audit records (seals, bulletins).

mod support;

use proptest::prelude::*;
use rectify_domain::Commit;
use rectify_domain::audit::AuditRecord;
use rectify_domain::values::Measure;
use rectify_tests::json::{at_path, paths};
use serde_json::{Value, json};
use support::*;

/// Encoded commits of a real history: report, deadline, progress with evidence, submission, acceptance,
/// a reopen and an enforcement measure.
fn real_commits() -> Vec<Vec<u8>> {
    let mut steps = closed();
    steps.push(reopen("seepage is back", Some(day(40))));
    steps.push(enforce(Measure::Penalty { amount_fen: 12_000_000 }));
    given(&steps).commits.iter().map(Commit::encode).collect()
}

/// Decoding must not panic; what decodes must survive encoding and its chain check must not panic.
fn decode_safely(bytes: &[u8]) {
    if let Ok(commit) = Commit::decode(bytes) {
        let again = Commit::decode(&commit.encode()).expect("an encoded commit decodes");
        assert_eq!(again, commit);
        let _ = commit.verify_chain("");
        let _ = commit.last_version();
        // Folding what decoded (as a reader of the log would) must not panic either.
        let _ = rectify_domain::State::replay(commit.events.iter());
    }
    if let Ok(record) = AuditRecord::decode(bytes) {
        let _ = record.encode();
    }
}

/// Values that break assumptions: extremes, wrong types, deep nesting, odd strings.
fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e308)),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!("")),
        Just(json!([])),
        Just(json!({})),
        Just(json!("9999-12-31T23:59:59Z")),
        Just(json!("P520102-\u{0}\u{202e}")),
        Just(json!([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])),
        "\\PC{0,40}".prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
    ]
}

/// How one JSON mutation changes a commit.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
    AddField(String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => hostile_value().prop_map(Mutation::Replace),
        1 => Just(Mutation::Remove),
        1 => ("[a-z_]{1,12}", hostile_value()).prop_map(|(k, v)| Mutation::AddField(k, v)),
    ]
}

fn mutate(value: &mut Value, path: &[String], mutation: &Mutation) {
    match mutation {
        Mutation::Replace(new) => *at_path(value, path) = new.clone(),
        Mutation::Remove => {
            if let Some((last, parent)) = path.split_last() {
                match at_path(value, parent) {
                    Value::Object(map) => {
                        map.remove(last);
                    }
                    Value::Array(items) => {
                        items.remove(last.parse::<usize>().expect("an index"));
                    }
                    _ => {}
                }
            }
        }
        Mutation::AddField(key, new) => {
            if let Value::Object(map) = at_path(value, path) {
                map.insert(key.clone(), new.clone());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_safely(&bytes);
    }

    #[test]
    fn byte_flips_of_real_commits_never_panic(
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let commits = real_commits();
        let mut bytes = which.get(&commits).clone();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        decode_safely(&bytes);
    }

    #[test]
    fn json_mutations_of_real_commits_never_panic(
        which in any::<prop::sample::Index>(),
        changes in proptest::collection::vec((any::<prop::sample::Index>(), mutation()), 1..4),
    ) {
        let commits = real_commits();
        let mut value: Value = serde_json::from_slice(which.get(&commits).as_slice()).unwrap();
        for (at, change) in changes {
            let all = paths(&value);
            let path = at.get(&all).clone();
            mutate(&mut value, &path, &change);
        }
        decode_safely(&serde_json::to_vec(&value).unwrap());
    }
}

#[test]
fn a_commit_whose_versions_would_overflow_is_refused_not_a_panic() {
    let commits = real_commits();
    // A commit of two events (forged) starting at the largest version.
    let mut value: Value = serde_json::from_slice(&commits[0]).unwrap();
    let first = value["events"][0].clone();
    value["events"] = json!([first.clone(), first]);
    value["events"][0]["version"] = json!(u64::MAX);
    value["events"][1]["version"] = json!(0);
    assert!(Commit::decode(&serde_json::to_vec(&value).unwrap()).is_err());
}

#[test]
fn a_sealed_commit_of_several_events_encodes_as_its_serialization() {
    let id = rectify_domain::AggregateId::parse("P520102-a").unwrap();
    let ctx = rectify_domain::CommandContext {
        actor: officer(),
        occurred_at: day(3),
        recorded_at: day(3) + chrono::Duration::nanoseconds(1_500),
        command_id: "cmd \"quoted\" \\ 污水".into(),
        correlation_id: "c\n1".into(),
    };
    let note = |n: &str| rectify_domain::Event::ProgressReported { note: n.into(), evidence: vec![evidence(1)] };
    let commit = Commit::seal(&id, 4, "ab", &ctx, vec![note("first \u{1}"), note("second 整改")]);
    assert_eq!(commit.encode(), serde_json::to_vec(&commit).unwrap());
    let decoded = Commit::decode(&commit.encode()).unwrap();
    assert_eq!((decoded.last_version(), decoded.verify_chain("ab")), (6, Ok(())));
}

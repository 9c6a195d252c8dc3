//! Reply and signature extraction may not score lower on the labelled corpus than the figures
//! recorded in `tests/corpora/reply/scores.json` (written by the `reply_score` example with
//! `--record`); a change that lowers one must say so by recording the lower figure.

use mailroom_testkit::reply_corpus::{corpus_dir, items, our_scores};
use serde_json::Value;

#[test]
fn scores_do_not_drop_below_the_recorded_ones() {
    let path = corpus_dir().join("scores.json");
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let recorded: Value = serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{e}"));
    let now = our_scores(&items());
    let mut drops = Vec::new();
    let mut checked = 0;
    for (corpus, metrics) in recorded.as_object().into_iter().flatten() {
        for (metric, floor) in metrics.as_object().into_iter().flatten() {
            let (Some(floor), Some(got)) = (floor.as_f64(), now[corpus][metric].as_f64()) else {
                panic!(
                    "{corpus}.{metric}: not a number now or in {}",
                    path.display()
                );
            };
            checked += 1;
            if got + 1e-9 < floor {
                drops.push(format!("{corpus}.{metric}: {got} < recorded {floor}"));
            }
        }
    }
    assert!(
        checked >= 10,
        "expected every recorded figure, checked {checked}"
    );
    assert!(drops.is_empty(), "scores dropped:\n{}", drops.join("\n"));
}

#[test]
fn the_corpus_is_the_one_recorded() {
    let all = items();
    let count = |c: &str| all.iter().filter(|i| i.corpus == c).count();
    assert_eq!(
        (count("talon_std"), count("forge_P"), count("forge_N")),
        (12, 97, 95)
    );
}

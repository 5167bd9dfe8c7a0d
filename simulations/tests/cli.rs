//! The `porchlight-sim` binary as a user meets it: real `--help`, reproducible output for a
//! seed, well-formed JSON, and one clear error line with a non-zero exit for bad input.

use std::process::{Command, Output};

fn porchlight_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_porchlight-sim"))
        .args(args)
        .output()
        .expect("the porchlight-sim binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

#[test]
fn help_names_the_link_profile_command_and_its_presets() {
    let top = porchlight_sim(&["--help"]);
    assert!(top.status.success());
    assert!(stdout(&top).contains("link-profile"), "{}", stdout(&top));

    let sub = porchlight_sim(&["link-profile", "--help"]);
    assert!(sub.status.success());
    let help = stdout(&sub);
    for expected in [
        "--profile",
        "--samples",
        "--seed",
        "--json",
        "lan",
        "city",
        "flaky",
    ] {
        assert!(help.contains(expected), "missing {expected} in:\n{help}");
    }
}

#[test]
fn the_same_seed_prints_byte_identical_text() {
    let args = [
        "link-profile",
        "--profile",
        "flaky",
        "--samples",
        "20000",
        "--seed",
        "7",
    ];
    let first = porchlight_sim(&args);
    let second = porchlight_sim(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(first.stdout, second.stdout);
    let text = stdout(&first);
    assert!(text.contains("seed 7"), "the seed is printed:\n{text}");
    assert!(text.contains("latency p99"), "{text}");

    let other_seed = porchlight_sim(&[
        "link-profile",
        "--profile",
        "flaky",
        "--samples",
        "20000",
        "--seed",
        "8",
    ]);
    assert_ne!(first.stdout, other_seed.stdout);
}

#[test]
fn json_output_is_one_object_with_loss_and_percentiles() {
    let output = porchlight_sim(&[
        "link-profile",
        "--profile",
        "flaky",
        "--samples",
        "100000",
        "--seed",
        "7",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON value");
    assert_eq!(report["preset"], "flaky");
    assert_eq!(report["seed"], 7);
    assert_eq!(report["samples"], 100_000);
    let loss_rate = report["loss_rate"].as_f64().expect("loss_rate is a number");
    assert!((loss_rate - 0.10).abs() < 0.005, "loss_rate {loss_rate}");
    let latency = &report["latency_us"];
    let p50 = latency["p50"].as_u64().expect("p50");
    let p90 = latency["p90"].as_u64().expect("p90");
    let p99 = latency["p99"].as_u64().expect("p99");
    let max = latency["max"].as_u64().expect("max");
    assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "{latency}");
}

#[test]
fn total_loss_reports_no_latency_rather_than_failing() {
    let output = porchlight_sim(&["link-profile", "--loss", "1", "--samples", "1000", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["lost"], 1_000);
    assert!(report["latency_us"].is_null());
}

#[test]
fn an_invalid_loss_is_one_clear_error_line_and_a_failure_exit() {
    for loss in ["1.5", "NaN"] {
        let output = porchlight_sim(&["link-profile", "--loss", loss, "--samples", "10"]);
        assert!(!output.status.success(), "--loss {loss} was accepted");
        assert!(output.stdout.is_empty());
        let message = stderr(&output);
        assert!(
            message.starts_with(
                "porchlight-sim: invalid link profile based on 'city': link loss must be"
            ),
            "{message}"
        );
        assert_eq!(message.lines().count(), 1, "{message}");
    }
}

#[test]
fn zero_samples_is_rejected_by_the_argument_parser() {
    let output = porchlight_sim(&["link-profile", "--samples", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--samples"), "{}", stderr(&output));
}

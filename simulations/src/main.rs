//! The `porchlight-sim` command line: parses arguments, runs one subcommand against the
//! library, and prints the result as text or JSON.
//!
//! It is glue only: the simulation logic lives in the library so tests can drive it without
//! a process. Raw arguments are parsed by clap, then validated into the library's checked
//! types (a [`LinkProfile`] is built through [`LinkProfile::new`]), so bad input becomes one
//! clear error. Errors flow as `anyhow` to `main`, which prints them once as
//! `porchlight-sim: {err:#}` and exits non-zero; a closed pipe (`| head`) exits quietly.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use porchlight_sim::{LinkProfile, LinkProfileParams, LinkStats, SimDuration, sample_link_profile};

/// Sorting this many latencies takes well under a second and 80 MB; more is not a sample but
/// a memory problem.
const MAX_SAMPLES: u64 = 10_000_000;

#[derive(Debug, Parser)]
#[command(
    name = "porchlight-sim",
    version,
    about = "Deterministic simulator for a city-scale Porchlight camera mesh",
    long_about = "Deterministic simulator for a city-scale Porchlight camera mesh.\n\n\
        Everything is driven by simulated time and a seeded random stream: no sockets, no \
        clocks, no threads. The same seed gives byte-identical output, so any run can be \
        replayed from the seed it prints."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sample a link profile and print its loss rate and latency percentiles
    #[command(
        long_about = "Sample a link profile and print its loss rate and latency \
        percentiles.\n\n\
        Sends --samples messages of --bytes bytes through the link model seeded with --seed \
        and reports how many were lost and how long the rest took (nearest-rank p50, p90, p99 \
        and max). Use it to see what a profile means before a city run. Any preset parameter \
        can be overridden to try a variant.\n\n\
        Example: porchlight-sim link-profile --profile flaky --samples 100000 --seed 7 --json"
    )]
    LinkProfile(LinkProfileArgs),
}

#[derive(Debug, Args)]
struct LinkProfileArgs {
    /// The link preset to sample
    #[arg(long, value_enum, default_value_t = Preset::City)]
    profile: Preset,

    /// How many messages to send through the link
    #[arg(
        long,
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SAMPLES)
    )]
    samples: u64,

    /// Seed of the link model's random stream; the same seed prints the same numbers
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Size of each message in bytes; adds its serialization delay at the link's bandwidth
    #[arg(long, value_name = "BYTES", default_value_t = 1_200)]
    bytes: usize,

    /// Override the preset's one-way base latency, in microseconds
    #[arg(long, value_name = "MICROS")]
    base_latency_us: Option<u64>,

    /// Override the preset's jitter (each message adds a uniform 0..=jitter), in microseconds
    #[arg(long, value_name = "MICROS")]
    jitter_us: Option<u64>,

    /// Override the preset's loss probability, between 0 and 1
    #[arg(long, value_name = "PROBABILITY")]
    loss: Option<f64>,

    /// Override the preset's sender bandwidth, in bytes per second
    #[arg(long, value_name = "BYTES_PER_SEC")]
    bandwidth: Option<u64>,

    /// Print one JSON object on one line instead of text
    #[arg(long)]
    json: bool,
}

/// The named link presets, mirrored from the library so clap can list them in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// One home network: 0.3 ms + up to 0.2 ms jitter, no loss, 1 Gbit/s
    Lan,
    /// Home broadband across a city: 20 ms + up to 10 ms jitter, 0.5% loss, 20 Mbit/s uplink
    City,
    /// A bad link: 80 ms + up to 150 ms jitter, 10% loss, 1 Mbit/s uplink
    Flaky,
}

impl Preset {
    fn profile(self) -> LinkProfile {
        match self {
            Preset::Lan => LinkProfile::lan(),
            Preset::City => LinkProfile::city(),
            Preset::Flaky => LinkProfile::flaky(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Preset::Lan => "lan",
            Preset::City => "city",
            Preset::Flaky => "flaky",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("porchlight-sim: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::LinkProfile(args) => link_profile(&args),
    }
}

fn link_profile(args: &LinkProfileArgs) -> anyhow::Result<()> {
    let profile = checked_profile(args)?;
    let samples = usize::try_from(args.samples)
        .with_context(|| format!("--samples {} does not fit in memory", args.samples))?;
    let stats = sample_link_profile(&profile, args.seed, samples, args.bytes);

    let report = if args.json {
        json_report(args, &profile, &stats)
    } else {
        text_report(args, &profile, &stats)
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write the report to stdout")
}

/// The preset with any overrides applied, validated.
fn checked_profile(args: &LinkProfileArgs) -> anyhow::Result<LinkProfile> {
    let preset = args.profile.profile().params();
    let params = LinkProfileParams {
        base_latency: args
            .base_latency_us
            .map_or(preset.base_latency, SimDuration::from_micros),
        jitter: args
            .jitter_us
            .map_or(preset.jitter, SimDuration::from_micros),
        loss: args.loss.unwrap_or(preset.loss),
        bandwidth_bytes_per_sec: args.bandwidth.unwrap_or(preset.bandwidth_bytes_per_sec),
    };
    LinkProfile::new(params)
        .with_context(|| format!("invalid link profile based on '{}'", args.profile.name()))
}

fn text_report(args: &LinkProfileArgs, profile: &LinkProfile, stats: &LinkStats) -> String {
    let mut lines = vec![
        format!(
            "link profile {} (seed {}, {} messages of {} bytes)",
            args.profile.name(),
            args.seed,
            stats.samples,
            args.bytes
        ),
        format!("  base latency  {}", profile.base_latency()),
        format!("  jitter        0 to {}, uniform", profile.jitter()),
        format!("  loss          {:.3}%", profile.loss() * 100.0),
        format!(
            "  bandwidth     {} bytes/s ({} to serialize one message)",
            profile.bandwidth_bytes_per_sec(),
            profile.serialization_delay(args.bytes)
        ),
        "sampled".to_owned(),
        format!(
            "  lost          {} of {} ({:.3}%)",
            stats.lost,
            stats.samples,
            stats.loss_rate() * 100.0
        ),
    ];
    match stats.latency {
        Some(latency) => lines.extend([
            format!("  latency p50   {}", latency.p50),
            format!("  latency p90   {}", latency.p90),
            format!("  latency p99   {}", latency.p99),
            format!("  latency max   {}", latency.max),
        ]),
        None => lines.push("  latency       no message arrived".to_owned()),
    }
    let mut report = lines.join("\n");
    report.push('\n');
    report
}

fn json_report(args: &LinkProfileArgs, profile: &LinkProfile, stats: &LinkStats) -> String {
    let latency_us = stats.latency.map(|latency| {
        serde_json::json!({
            "p50": latency.p50.as_micros(),
            "p90": latency.p90.as_micros(),
            "p99": latency.p99.as_micros(),
            "max": latency.max.as_micros(),
        })
    });
    let report = serde_json::json!({
        "preset": args.profile.name(),
        "seed": args.seed,
        "samples": stats.samples,
        "bytes": args.bytes,
        "profile": {
            "base_latency_us": profile.base_latency().as_micros(),
            "jitter_us": profile.jitter().as_micros(),
            "loss": profile.loss(),
            "bandwidth_bytes_per_sec": profile.bandwidth_bytes_per_sec(),
        },
        "lost": stats.lost,
        "loss_rate": stats.loss_rate(),
        "latency_us": latency_us,
    });
    format!("{report}\n")
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io_err| io_err.kind() == io::ErrorKind::BrokenPipe)
    })
}

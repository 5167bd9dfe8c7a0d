//! `porchlight authority`: trust-root keys and credentials, for whoever vouches for
//! authorities (a county, a neighborhood association) and for the authorities themselves.
//!
//! These commands work on files only: they need no data dir and no running node. The
//! signing key never leaves its file except into memory (zeroized on drop); what they print
//! is public.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use porchlight_protocol::AuthorityRole;

use crate::authority::{
    CredentialTerms, DEFAULT_CREDENTIAL_VALIDITY, describe, generate_root_key, issue_credential,
    load_signing_key, parse_role, read_credential, write_credential,
};
use crate::clock;
use crate::trust::parse_public_key;

#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// Create a new trust-root key and print its public key (for `porchlight trust add`)
    RootKeygen {
        /// Where to write the secret key (created 0600; an existing file is never overwritten)
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Sign a credential that says who an authority's node is
    Issue(IssueArgs),
    /// Print what a credential file says, and check its signature
    Show {
        /// The credential file
        #[arg(value_name = "CRED")]
        credential: PathBuf,
    },
    /// Print the public key of a signing key file
    PublicKey {
        /// The signing key file (a trust root's or a node's identity key)
        #[arg(value_name = "KEY_FILE")]
        key: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The signing key: a root key from `root-keygen` (or an intermediate's key)
    #[arg(long, value_name = "FILE")]
    pub root_key: PathBuf,
    /// The authority node's peer id (`porchlight id` on that node)
    #[arg(long, value_name = "PEER_ID")]
    pub peer: String,
    /// The authority's name, as owners will see it
    #[arg(long)]
    pub name: String,
    /// Where the authority acts, as owners will see it
    #[arg(long, value_name = "TEXT")]
    pub jurisdiction: String,
    /// police, fire, medical, emergency-management or other
    #[arg(long, default_value = "other", value_parser = role_arg)]
    pub role: AuthorityRole,
    /// How long the credential is valid, such as 90d or 1year (at most 732 days)
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = humantime::parse_duration)]
    pub valid: std::time::Duration,
    /// Let the subject issue credentials in turn (an intermediate)
    #[arg(long)]
    pub may_issue: bool,
    /// Where to write the credential (an existing file is never overwritten)
    #[arg(short, long, value_name = "CRED")]
    pub output: PathBuf,
}

fn role_arg(text: &str) -> Result<AuthorityRole, String> {
    parse_role(text).map_err(|err| err.to_string())
}

/// Runs an `authority` subcommand.
pub fn run(command: AuthorityCommand) -> anyhow::Result<()> {
    match command {
        AuthorityCommand::RootKeygen { output } => {
            let public_key = generate_root_key(&output)?;
            println!("wrote a new root key to {}", output.display());
            println!("public key  {public_key}");
            println!(
                "keep the key file offline: anyone who holds it can vouch for authorities.\n\
                 owners who trust this root run: porchlight trust add {public_key} --label \"...\""
            );
            Ok(())
        }
        AuthorityCommand::Issue(args) => issue(args),
        AuthorityCommand::Show { credential } => {
            let (_, body) = read_credential(&credential)?;
            println!("credential {} (signature checks out)", credential.display());
            print_fields(&body);
            let now = clock::now()?;
            if body.not_after < now {
                println!("it has EXPIRED");
            }
            Ok(())
        }
        AuthorityCommand::PublicKey { key } => {
            println!("{}", load_signing_key(&key)?.peer_id());
            Ok(())
        }
    }
}

fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let subject = parse_public_key(&args.peer).context("bad --peer")?;
    let issuer = load_signing_key(&args.root_key)?;
    let terms = CredentialTerms {
        subject,
        display_name: args.name,
        jurisdiction: args.jurisdiction,
        role: args.role,
        valid_for: args.valid,
        may_issue: args.may_issue,
    };
    let signed = issue_credential(&issuer, terms, clock::now()?)?;
    write_credential(&args.output, &signed)?;
    println!("wrote credential {}", args.output.display());
    print_fields(signed.body());
    println!(
        "the authority starts its node with: porchlight node --credential {}",
        args.output.display()
    );
    if args.valid == DEFAULT_CREDENTIAL_VALIDITY {
        println!("(valid for the default 365 days; --valid sets another length)");
    }
    Ok(())
}

fn print_fields(credential: &porchlight_protocol::AuthorityCredential) {
    for (field, value) in describe(credential) {
        println!("  {field:<13} {value}");
    }
}

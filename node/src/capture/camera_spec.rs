//! Camera specs: what `--camera` accepts, parsed raw and then validated into a checked form.
//!
//! This module owns the grammar of a camera argument and nothing else: it does no I/O (a
//! missing device or file is a runtime failure that the supervisor retries, because cameras
//! get plugged in and NAS shares get mounted after the daemon starts). Parsing happens in
//! two steps, ripgrep-style: [`RawCameraArg`] splits `NAME=SPEC` and classifies the spec by
//! its prefix without judging it; [`CameraSpec`] is the validated result that the pipeline
//! builder can trust.
//!
//! Accepted forms (each optionally named as `NAME=SPEC`, e.g. `porch=test`):
//!
//! | spec | meaning | default name |
//! |---|---|---|
//! | `test`, `test:WIDTHxHEIGHT`, `test:WIDTHxHEIGHT@FPS`, `test:@FPS` | `videotestsrc` with a running clock overlay; 1280x720@15 unless given | `test` |
//! | `v4l2`, `v4l2:/dev/videoN` | a V4L2 (USB) camera; `v4l2` alone means `/dev/video0` | `videoN` |
//! | `rtsp://[user[:password]@]host[:port]/path`, `rtsps://...` | an RTSP camera; H.264 is passed through | the host |
//! | `file:PATH` (or `file:///abs/path`) | a video file, looped forever | the file stem |
//! | `none` | no camera at all (a node for an authority or a neighbor) | — |
//!
//! RTSP credentials are secrets: they never appear in `Display`, `Debug` or an error
//! message, only in the separate `user-id`/`user-pw` properties handed to `rtspsrc`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use zeroize::Zeroizing;

/// The forms a camera spec may take, quoted in every "unknown spec" error.
pub const ACCEPTED_FORMS: &str = "use test[:WIDTHxHEIGHT][@FPS], v4l2:/dev/videoN, \
     rtsp://[user:password@]host[:port]/path, file:PATH or none, optionally named as NAME=SPEC \
     (e.g. porch=test)";

/// Longest camera name; names end up in clip metadata and on the phone page.
pub const MAX_NAME_LEN: usize = 32;

/// The test source's mode when `test` is given without one.
pub const DEFAULT_TEST_MODE: TestMode = TestMode {
    width: 1280,
    height: 720,
    fps: 15,
};

/// A camera argument that could not be accepted. Every message names the offending spec
/// (with any RTSP password redacted) and says what would be accepted instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// Nothing recognizable: not one of the accepted prefixes.
    #[error("unknown camera spec '{spec}'; {ACCEPTED_FORMS}")]
    Unknown {
        /// The spec as given, password redacted.
        spec: String,
    },
    /// An empty argument, or `NAME=` with nothing after it.
    #[error("empty camera spec; {ACCEPTED_FORMS}")]
    Empty,
    /// The `NAME` in `NAME=SPEC` breaks the naming rules.
    #[error(
        "bad camera name '{name}': {reason}; use up to 32 lowercase letters, digits, '-' or '_', \
         starting with a letter or digit (e.g. porch=test)"
    )]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `test:...` with a mode that does not parse or is out of range.
    #[error(
        "bad test camera mode in '{spec}': {reason}; use test:WIDTHxHEIGHT@FPS, e.g. test:1280x720@15"
    )]
    BadTestMode {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `v4l2:...` with a device path that cannot be one.
    #[error("bad v4l2 camera '{spec}': {reason}; use v4l2:/dev/videoN, e.g. v4l2:/dev/video0")]
    BadDevice {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `rtsp://` URL that does not parse.
    #[error(
        "bad rtsp camera url '{url}': {reason}; use rtsp://[user:password@]host[:port]/path, \
         e.g. rtsp://admin:secret@192.168.1.20:554/stream1"
    )]
    BadRtsp {
        /// The URL as given, password redacted.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `file:` without a usable path.
    #[error(
        "bad file camera '{spec}': {reason}; use file:PATH, e.g. file:/srv/porchlight/demo.mp4"
    )]
    BadFile {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `NAME=none`: `none` means "no camera", which has nothing to name.
    #[error("'{name}=none' names a camera that does not exist; write plain 'none'")]
    NamedNone {
        /// The name given to `none`.
        name: String,
    },
    /// `none` where one camera was expected.
    #[error("'none' means no camera; pass it as the node's only camera spec")]
    NoneIsNotACamera,
    /// `none` next to real cameras.
    #[error("'none' cannot be combined with other cameras; drop 'none' or the other camera specs")]
    NoneWithOthers,
    /// Two cameras with one name.
    #[error("two cameras are named '{name}'; give each its own name, e.g. front={spec}")]
    DuplicateName {
        /// The name used twice.
        name: String,
        /// The second spec with that name, password redacted.
        spec: String,
    },
    /// A clip length outside the supported range.
    #[error("clip length of {seconds} s is out of range; use 1 to 3600 seconds")]
    ClipLength {
        /// The rejected number of seconds.
        seconds: u64,
    },
}

/// A validated camera name: 1 to 32 of `[a-z0-9_-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CameraName(String);

impl CameraName {
    /// Checks a name against the naming rules.
    pub fn new(name: &str) -> Result<CameraName, SpecError> {
        let bad = |reason| SpecError::BadName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad("it is longer than 32 characters"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(bad(
                "it may only hold lowercase letters, digits, '-' and '_'",
            ));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(bad("it must start with a lowercase letter or a digit"));
        }
        Ok(CameraName(name.to_owned()))
    }

    /// Derives a valid name from free text (a host, a file stem): lowercased, other
    /// characters turned into '-', trimmed to the length limit; `fallback` when nothing
    /// usable is left.
    fn derive(text: &str, fallback: &str) -> CameraName {
        let mut name = String::with_capacity(text.len().min(MAX_NAME_LEN));
        for c in text.chars() {
            let c = c.to_ascii_lowercase();
            let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '-'
            };
            if c == '-' && (name.is_empty() || name.ends_with('-')) {
                continue;
            }
            name.push(c);
            if name.len() == MAX_NAME_LEN {
                break;
            }
        }
        let trimmed = name.trim_end_matches('-');
        match CameraName::new(trimmed) {
            Ok(name) => name,
            Err(_) => CameraName(fallback.to_owned()),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CameraName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resolution and frame rate of the test source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestMode {
    /// Width in pixels (even, 16 to 3840).
    pub width: u32,
    /// Height in pixels (even, 16 to 2160).
    pub height: u32,
    /// Frames per second (1 to 60).
    pub fps: u32,
}

impl fmt::Display for TestMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}@{}", self.width, self.height, self.fps)
    }
}

/// An RTSP camera URL, split so that the credentials travel apart from the location.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspUrl {
    /// `rtsp` or `rtsps`, lowercased.
    scheme: String,
    /// Percent-decoded user name, if any.
    user: Option<String>,
    /// Percent-decoded password, if any. Never printed.
    password: Option<Zeroizing<String>>,
    /// `host[:port]`.
    host_port: String,
    /// Everything after the authority: `/path?query#fragment`, possibly empty.
    rest: String,
}

impl RtspUrl {
    fn parse(url: &str) -> Result<RtspUrl, SpecError> {
        let bad = |reason| SpecError::BadRtsp {
            url: redact_spec(url),
            reason,
        };
        let (scheme, after) = url
            .split_once("://")
            .ok_or_else(|| bad("it has no '://'"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "rtsp" && scheme != "rtsps" {
            return Err(bad("the scheme must be rtsp or rtsps"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains spaces or control characters"));
        }
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(authority_end);
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port).map_err(bad)?;
        if host.is_empty() {
            return Err(bad("it has no host"));
        }
        if let Some(port) = port
            && port.parse::<u16>().is_err()
        {
            return Err(bad("the port is not a number from 0 to 65535"));
        }
        let (user, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                let user =
                    percent_decode(user).ok_or_else(|| bad("the user name has a bad %-escape"))?;
                let password = match password {
                    Some(p) => Some(Zeroizing::new(
                        percent_decode(p).ok_or_else(|| bad("the password has a bad %-escape"))?,
                    )),
                    None => None,
                };
                (Some(user), password)
            }
        };
        Ok(RtspUrl {
            scheme,
            user,
            password,
            host_port: host_port.to_owned(),
            rest: rest.to_owned(),
        })
    }

    /// The URL without any credentials: what `rtspsrc` gets as its `location`, so that
    /// GStreamer's own error messages and debug logs cannot leak the password.
    pub fn location(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host_port, self.rest)
    }

    /// The user name, if the URL carries one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password, for `rtspsrc`'s `user-pw` only.
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_ref().map(|p| p.as_str())
    }

    /// The host (without port), used for the default camera name.
    fn host(&self) -> &str {
        split_host_port(&self.host_port).map_or("", |(host, _)| host)
    }
}

/// Shows the URL with the password replaced by `***`, and with the values of query
/// parameters that look like credentials redacted too.
impl fmt::Display for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if let Some(user) = &self.user {
            write!(f, "{user}")?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}{}", self.host_port, redact_query(&self.rest))
    }
}

impl fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RtspUrl").field(&self.to_string()).finish()
    }
}

/// Where a camera's video comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// `videotestsrc` with a running clock overlay.
    Test(TestMode),
    /// A V4L2 device node.
    V4l2 {
        /// The device, e.g. `/dev/video0`.
        device: PathBuf,
    },
    /// An RTSP camera; H.264 is passed through without re-encoding.
    Rtsp(RtspUrl),
    /// A video file, decoded, re-encoded and looped.
    File {
        /// The file to loop.
        path: PathBuf,
    },
}

impl Source {
    /// Whether the source runs in real time by itself (a live source) rather than being
    /// paced by the pipeline clock (a file).
    pub fn is_live(&self) -> bool {
        !matches!(self, Source::File { .. })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Test(mode) => write!(f, "test:{mode}"),
            Source::V4l2 { device } => write!(f, "v4l2:{}", device.display()),
            Source::Rtsp(url) => write!(f, "{url}"),
            Source::File { path } => write!(f, "file:{}", path.display()),
        }
    }
}

/// One validated camera: a name and a source.
///
/// `Display` gives `name=spec` with any password redacted, safe for logs and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraSpec {
    name: CameraName,
    source: Source,
}

impl CameraSpec {
    /// A camera from already-validated parts.
    pub fn new(name: CameraName, source: Source) -> CameraSpec {
        CameraSpec { name, source }
    }

    /// The camera's name.
    pub fn name(&self) -> &CameraName {
        &self.name
    }

    /// Where its video comes from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// For a file camera whose file is not there (or not a regular file), its path: such a
    /// camera could only retry forever, so the daemon refuses it at start and `doctor`
    /// reports it.
    pub fn missing_file(&self) -> Option<&std::path::Path> {
        match &self.source {
            Source::File { path } if !path.is_file() => Some(path),
            _ => None,
        }
    }

    /// The spec without its name, password redacted.
    pub fn redacted(&self) -> String {
        self.source.to_string()
    }
}

impl fmt::Display for CameraSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.source)
    }
}

/// Parses one camera; `none` is rejected here because it is not a camera (use
/// [`parse_cameras`] for a node's whole camera list).
impl FromStr for CameraSpec {
    type Err = SpecError;

    fn from_str(arg: &str) -> Result<CameraSpec, SpecError> {
        match RawCameraArg::split(arg).validate()? {
            Some(spec) => Ok(spec),
            None => Err(SpecError::NoneIsNotACamera),
        }
    }
}

/// The kind of a spec, recognized by its prefix only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawKind<'a> {
    /// `test` or `test:MODE`; holds the mode text, if any.
    Test(Option<&'a str>),
    /// `v4l2` or `v4l2:PATH`; holds the path text, if any.
    V4l2(Option<&'a str>),
    /// `rtsp://...` or `rtsps://...`; holds the whole URL.
    Rtsp(&'a str),
    /// `file:PATH`; holds the path text.
    File(&'a str),
    /// `none`.
    None,
    /// Anything else.
    Unknown,
}

/// A camera argument split into its optional name and its spec, not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCameraArg<'a> {
    /// The text before `=`, when the text before the first `=` can be a name (it holds no
    /// `:` or `/`, so `rtsp://cam/x?channel=1` is a spec, not a name).
    pub name: Option<&'a str>,
    /// The spec itself.
    pub spec: &'a str,
}

impl<'a> RawCameraArg<'a> {
    /// Splits `NAME=SPEC`; never fails.
    pub fn split(arg: &'a str) -> RawCameraArg<'a> {
        let arg = arg.trim();
        match arg.split_once('=') {
            Some((name, spec)) if !name.contains([':', '/', '?', '#', '@']) => RawCameraArg {
                name: Some(name.trim()),
                spec: spec.trim(),
            },
            _ => RawCameraArg {
                name: None,
                spec: arg,
            },
        }
    }

    fn kind(&self) -> RawKind<'a> {
        let spec = self.spec;
        let lower = spec.to_ascii_lowercase();
        if spec == "test" {
            RawKind::Test(None)
        } else if let Some(mode) = spec.strip_prefix("test:") {
            RawKind::Test(Some(mode))
        } else if spec == "v4l2" {
            RawKind::V4l2(None)
        } else if let Some(path) = spec.strip_prefix("v4l2:") {
            RawKind::V4l2(Some(path))
        } else if lower.starts_with("rtsp://") || lower.starts_with("rtsps://") {
            RawKind::Rtsp(spec)
        } else if let Some(path) = spec.strip_prefix("file:") {
            RawKind::File(path)
        } else if spec == "none" {
            RawKind::None
        } else {
            RawKind::Unknown
        }
    }

    /// Validates into a camera, or `None` for `none`.
    pub fn validate(&self) -> Result<Option<CameraSpec>, SpecError> {
        if self.spec.is_empty() {
            return Err(SpecError::Empty);
        }
        let (source, default_name) = match self.kind() {
            RawKind::None => {
                return match self.name {
                    Some(name) => Err(SpecError::NamedNone {
                        name: name.to_owned(),
                    }),
                    None => Ok(None),
                };
            }
            RawKind::Unknown => {
                return Err(SpecError::Unknown {
                    spec: redact_spec(self.spec),
                });
            }
            RawKind::Test(mode) => {
                let mode = match mode {
                    None => DEFAULT_TEST_MODE,
                    Some(mode) => parse_test_mode(self.spec, mode)?,
                };
                (Source::Test(mode), CameraName("test".to_owned()))
            }
            RawKind::V4l2(path) => {
                let device = PathBuf::from(path.unwrap_or("/dev/video0"));
                check_device(self.spec, &device)?;
                let name = device
                    .file_name()
                    .map(|n| CameraName::derive(&n.to_string_lossy(), "v4l2"))
                    .unwrap_or_else(|| CameraName("v4l2".to_owned()));
                (Source::V4l2 { device }, name)
            }
            RawKind::Rtsp(url) => {
                let url = RtspUrl::parse(url)?;
                let name = CameraName::derive(url.host(), "rtsp");
                (Source::Rtsp(url), name)
            }
            RawKind::File(path) => {
                let path = parse_file_path(self.spec, path)?;
                let name = path
                    .file_stem()
                    .map(|stem| CameraName::derive(&stem.to_string_lossy(), "file"))
                    .unwrap_or_else(|| CameraName("file".to_owned()));
                (Source::File { path }, name)
            }
        };
        let name = match self.name {
            Some(name) => CameraName::new(name)?,
            None => default_name,
        };
        Ok(Some(CameraSpec { name, source }))
    }
}

/// Parses a node's camera arguments: no arguments means one `test` camera, `none` alone
/// means no camera, and names must be unique.
pub fn parse_cameras<S: AsRef<str>>(args: &[S]) -> Result<Vec<CameraSpec>, SpecError> {
    if args.is_empty() {
        return Ok(vec![CameraSpec {
            name: CameraName("test".to_owned()),
            source: Source::Test(DEFAULT_TEST_MODE),
        }]);
    }
    let mut cameras: Vec<CameraSpec> = Vec::with_capacity(args.len());
    let mut saw_none = false;
    for arg in args {
        match RawCameraArg::split(arg.as_ref()).validate()? {
            None => saw_none = true,
            Some(spec) => {
                if cameras.iter().any(|c| c.name == spec.name) {
                    return Err(SpecError::DuplicateName {
                        name: spec.name.0.clone(),
                        spec: spec.redacted(),
                    });
                }
                cameras.push(spec);
            }
        }
    }
    if saw_none && (!cameras.is_empty() || args.len() > 1) {
        return Err(SpecError::NoneWithOthers);
    }
    Ok(cameras)
}

/// How long each clip is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipLength(Duration);

impl ClipLength {
    /// The default: one minute.
    pub const DEFAULT: ClipLength = ClipLength(Duration::from_secs(60));

    /// A clip length of `seconds`, 1 to 3600.
    pub fn from_secs(seconds: u64) -> Result<ClipLength, SpecError> {
        if (1..=3600).contains(&seconds) {
            Ok(ClipLength(Duration::from_secs(seconds)))
        } else {
            Err(SpecError::ClipLength { seconds })
        }
    }

    /// The length as a duration.
    pub fn duration(self) -> Duration {
        self.0
    }

    /// The length in whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl Default for ClipLength {
    fn default() -> ClipLength {
        ClipLength::DEFAULT
    }
}

fn parse_test_mode(spec: &str, mode: &str) -> Result<TestMode, SpecError> {
    let bad = |reason: String| SpecError::BadTestMode {
        spec: spec.to_owned(),
        reason,
    };
    if mode.is_empty() {
        return Err(bad("the mode after 'test:' is empty".to_owned()));
    }
    let (size, fps) = match mode.split_once('@') {
        Some((size, fps)) => (size, Some(fps)),
        None => (mode, None),
    };
    let mut parsed = DEFAULT_TEST_MODE;
    if !size.is_empty() {
        let (w, h) = size
            .split_once('x')
            .ok_or_else(|| bad(format!("'{size}' is not WIDTHxHEIGHT")))?;
        parsed.width = parse_in_range("width", w, 16, 3840).map_err(&bad)?;
        parsed.height = parse_in_range("height", h, 16, 2160).map_err(&bad)?;
        if parsed.width % 2 != 0 || parsed.height % 2 != 0 {
            return Err(bad(format!(
                "{}x{} is odd; H.264 in 4:2:0 needs an even width and height",
                parsed.width, parsed.height
            )));
        }
    }
    if let Some(fps) = fps {
        parsed.fps = parse_in_range("frame rate", fps, 1, 60).map_err(&bad)?;
    }
    Ok(parsed)
}

fn parse_in_range(what: &str, text: &str, min: u32, max: u32) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{what} {n} is out of range {min} to {max}")),
        Err(_) => Err(format!("{what} '{text}' is not a whole number")),
    }
}

fn check_device(spec: &str, device: &Path) -> Result<(), SpecError> {
    let bad = |reason| SpecError::BadDevice {
        spec: spec.to_owned(),
        reason,
    };
    let text = device.as_os_str();
    if text.is_empty() {
        return Err(bad("the device path is empty"));
    }
    if !device.is_absolute() {
        return Err(bad("the device path must be absolute"));
    }
    if device.file_name().is_none() {
        return Err(bad("the device path names no device"));
    }
    Ok(())
}

fn parse_file_path(spec: &str, path: &str) -> Result<PathBuf, SpecError> {
    let bad = |reason| SpecError::BadFile {
        spec: spec.to_owned(),
        reason,
    };
    // `file:///srv/demo.mp4` is a file URI; `file:/srv/demo.mp4` and `file:demo.mp4` are paths.
    let path = match path.strip_prefix("//") {
        Some(uri_path) => {
            if !uri_path.starts_with('/') {
                return Err(bad(
                    "a file:// URI must hold an absolute path (file:///...)",
                ));
            }
            percent_decode(uri_path).ok_or_else(|| bad("the path has a bad %-escape"))?
        }
        None => path.to_owned(),
    };
    if path.is_empty() {
        return Err(bad("the path is empty"));
    }
    if path.ends_with('/') {
        return Err(bad("the path names a directory"));
    }
    Ok(PathBuf::from(path))
}

/// Splits `host[:port]` or `[v6]:port` into host and port text.
fn split_host_port(host_port: &str) -> Result<(&str, Option<&str>), &'static str> {
    match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, tail) = v6
                .split_once(']')
                .ok_or("an IPv6 host is missing its ']'")?;
            match tail {
                "" => Ok((host, None)),
                _ => tail
                    .strip_prefix(':')
                    .map(|port| (host, Some(port)))
                    .ok_or("only ':port' may follow an IPv6 host"),
            }
        }
        None => Ok(match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }),
    }
}

/// Decodes `%XX` escapes; `None` on a malformed escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Redacts anything in free text that looks like URL credentials (`://user:pass@`), for
/// error messages about specs that did not parse.
fn redact_spec(spec: &str) -> String {
    let Some(scheme_end) = spec.find("://") else {
        return spec.to_owned();
    };
    let authority_start = scheme_end + 3;
    let after = &spec[authority_start..];
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..authority_end];
    let redacted_authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    format!(
        "{}{}{}",
        &spec[..authority_start],
        redacted_authority,
        redact_query(&after[authority_end..])
    )
}

/// Redacts the values of query parameters whose names suggest a credential
/// (`?user=admin&password=x` becomes `?user=admin&password=***`).
fn redact_query(rest: &str) -> String {
    let Some((path, query)) = rest.split_once('?') else {
        return rest.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
            _ => param.to_owned(),
        })
        .collect();
    let mut out = format!("{path}?{}", params.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "auth", "key", "sig"]
        .iter()
        .any(|needle| key.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_names() {
        assert_eq!(
            CameraName::derive("192.168.1.20", "x").as_str(),
            "192-168-1-20"
        );
        assert_eq!(
            CameraName::derive("Front Door!", "x").as_str(),
            "front-door"
        );
        assert_eq!(CameraName::derive("...", "file").as_str(), "file");
        assert_eq!(
            CameraName::derive(&"a".repeat(50), "x").as_str().len(),
            MAX_NAME_LEN
        );
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_spec("rtps://admin:hunter2@cam/x?password=y&a=1"),
            "rtps://admin:***@cam/x?password=***&a=1"
        );
        assert_eq!(redact_spec("nothing here"), "nothing here");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("p%40ss%3Aw").as_deref(), Some("p@ss:w"));
        assert_eq!(percent_decode("bad%4"), None);
        assert_eq!(percent_decode("bad%zz"), None);
    }
}

//! Interface names, checked once where they enter (the command line, a bpffs listing) and
//! trusted everywhere after: a name becomes a path component under `/sys/fs/bpf/netxdp/`, so
//! `..`, `.`, `""` or `a/b` would name other pins (`netxdp detach ..` once removed every pin
//! in bpffs).

use std::{fmt, str::FromStr};

/// The longest name the kernel gives an interface (IFNAMSIZ less its NUL).
pub const MAX_LEN: usize = 15;

/// A name the kernel could give an interface, as `dev_valid_name` (net/core/dev.c) decides:
/// 1-15 bytes, not `.` or `..`, and no `/`, `:`, whitespace or NUL.
///
/// ```
/// use netxdp::iface::IfaceName;
///
/// assert!("eth0".parse::<IfaceName>().is_ok());
/// assert!("..".parse::<IfaceName>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfaceName(String);

/// Why a name is not one the kernel could give an interface.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadIfaceName {
    #[error("an interface name cannot be empty")]
    Empty,
    #[error("interface name {name:?} is {len} bytes long; the kernel allows at most {MAX_LEN}")]
    TooLong { name: String, len: usize },
    #[error("{0:?} is not an interface name: the kernel refuses \".\" and \"..\"")]
    Dots(String),
    #[error("interface name {name:?} contains {what}, which the kernel does not allow")]
    Forbidden { name: String, what: &'static str },
}

impl IfaceName {
    pub fn new(name: impl Into<String>) -> Result<Self, BadIfaceName> {
        let name = name.into();
        if name.is_empty() {
            return Err(BadIfaceName::Empty);
        }
        if name.len() > MAX_LEN {
            let len = name.len();
            return Err(BadIfaceName::TooLong { name, len });
        }
        if name == "." || name == ".." {
            return Err(BadIfaceName::Dots(name));
        }
        if let Some(what) = name.bytes().find_map(forbidden) {
            return Err(BadIfaceName::Forbidden { name, what });
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the kernel refuses in a name, byte by byte; its `isspace` also counts 0xa0 (Latin-1
/// no-break space), which appears inside UTF-8 characters such as "à".
fn forbidden(byte: u8) -> Option<&'static str> {
    match byte {
        b'/' => Some("'/'"),
        b':' => Some("':'"),
        0 => Some("a NUL byte"),
        b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => Some("whitespace"),
        0xa0 => Some("byte 0xa0 (whitespace to the kernel; UTF-8 \"à\" holds one)"),
        _ => None,
    }
}

impl FromStr for IfaceName {
    type Err = BadIfaceName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl TryFrom<String> for IfaceName {
    type Error = BadIfaceName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl fmt::Display for IfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IfaceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for IfaceName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for IfaceName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<IfaceName> for String {
    fn from(name: IfaceName) -> String {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_kernel_accepts() {
        for name in [
            "lo",
            "eth0",
            "veth-a.100",
            "br_lan@x",
            "fifteen-bytes-x",
            "...",
            ".x",
            "é",
        ] {
            let parsed: IfaceName = name.parse().unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(parsed.as_str(), name);
            assert_eq!(parsed.to_string(), name);
        }
    }

    #[test]
    fn refuses_what_the_kernel_refuses_and_says_why() {
        for (name, why) in [
            ("", "cannot be empty"),
            (".", "refuses \".\" and \"..\""),
            ("..", "refuses \".\" and \"..\""),
            ("sixteen-bytes-xx", "16 bytes long"),
            ("ééééééééé", "18 bytes long"),
            ("a/b", "'/'"),
            ("../x", "'/'"),
            ("/", "'/'"),
            ("eth0:1", "':'"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("a\nb", "whitespace"),
            ("a\x0bb", "whitespace"),
            ("a\x0cb", "whitespace"),
            ("a\rb", "whitespace"),
            ("à", "0xa0"), // UTF-8 c3 a0: the kernel's isspace(0xa0)
            ("nul\0", "NUL"),
        ] {
            let error = IfaceName::new(name).expect_err(name);
            assert!(error.to_string().contains(why), "{name:?}: {error}");
        }
    }

    #[test]
    fn the_error_names_the_name() {
        let error = "a/b".parse::<IfaceName>().unwrap_err();
        assert!(error.to_string().contains("\"a/b\""), "{error}");
    }
}

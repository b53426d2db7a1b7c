//! Go's `os.Expand` / `os.ExpandEnv`, ported by hand (what upstream runs over the whole config
//! file with `--expand-env`, and over each static manifest with `expandEnvStaticManifests`).
//!
//! Rules (byte-wise, exactly as Go):
//! - `$NAME` — NAME is the longest run of ASCII letters, digits and `_`, except that a leading
//!   digit is a one-character special name (`$1abc` is `$1` followed by `abc`).
//! - `${NAME}` — anything up to the first `}` is the name (`${A B}` looks up `"A B"`).
//! - `$*`, `$#`, `$$`, `$@`, `$!`, `$?`, `$-`, `$0`…`$9` (and `${*}` etc.) — one-character
//!   special names, looked up like any other (`$$` is the variable named `$`, normally unset,
//!   so it becomes empty — it is **not** an escaped dollar).
//! - `${}` — bad syntax: removed. `${` without a closing brace — bad syntax: the two
//!   characters `${` are removed and the rest is kept (`${FOO` → `FOO`).
//! - `$` followed by anything else (space, `.`, `"`, `/`, a non-ASCII character…) or at the very
//!   end of the text is kept as a literal `$` (so regexes such as `^kube-.*$` survive).
//! - Unset variables expand to the empty string.

/// Go's `os.Expand(s, mapping)`: replaces `$var` / `${var}` using `mapping`.
pub fn go_expand(s: &str, mut mapping: impl FnMut(&str) -> String) -> String {
    let b = s.as_bytes();
    let mut out: Option<String> = None;
    let mut i = 0; // start of the not-yet-copied text
    let mut j = 0;
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            let buf = out.get_or_insert_with(|| String::with_capacity(2 * s.len()));
            buf.push_str(&s[i..j]);
            let (name, w) = shell_name(&s[j + 1..]);
            if name.is_empty() && w > 0 {
                // Invalid syntax; eat the characters.
            } else if name.is_empty() {
                // Valid syntax, but $ was not followed by a name: keep the dollar.
                buf.push('$');
            } else {
                buf.push_str(&mapping(name));
            }
            j += w;
            i = j + 1;
        }
        j += 1;
    }
    match out {
        None => s.to_owned(),
        Some(mut buf) => {
            // `i` can be one past the end when the text ends with a `${...}` / `$NAME`.
            if i < s.len() {
                buf.push_str(&s[i..]);
            }
            buf
        }
    }
}

/// Go's `os.ExpandEnv` with the environment lookup passed in (unset → empty). Returns the
/// expanded text and the names that were looked up but unset, in order of first use.
pub fn go_expand_env(s: &str, env: impl Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let mut unset: Vec<String> = Vec::new();
    let out = go_expand(s, |name| match env(name) {
        Some(v) => v,
        None => {
            if !unset.iter().any(|u| u == name) {
                unset.push(name.to_owned());
            }
            String::new()
        }
    });
    (out, unset)
}

/// The process environment, for [`go_expand_env`] and [`crate::load`]: like Go's
/// `os.Getenv`, except that a value that isn't valid UTF-8 is converted lossily.
pub fn process_env(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        // std::env::var_os panics on these; no such variable can exist anyway.
        return None;
    }
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

fn is_shell_special_var(c: u8) -> bool {
    matches!(c, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9')
}

fn is_alpha_num(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// Go's `getShellName`: the name at the start of `s` (which is non-empty) and the number of
/// bytes consumed. `("", n > 0)` means bad syntax to be eaten; `("", 0)` means no name.
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_shell_special_var(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        // Scan to the closing brace.
        for i in 1..b.len() {
            if b[i] == b'}' {
                if i == 1 {
                    return ("", 2); // Bad syntax; eat "${}".
                }
                return (&s[1..i], i + 1);
            }
        }
        return ("", 1); // Bad syntax; eat "${".
    }
    if is_shell_special_var(b[0]) {
        return (&s[0..1], 1);
    }
    let n = b.iter().take_while(|&&c| is_alpha_num(c)).count();
    (&s[..n], n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/usr/gopher".into()),
            "H" => Some("(Value of H)".into()),
            "home_1" => Some("/usr/foo".into()),
            "_" => Some("underscore".into()),
            "*" => Some("all the args".into()),
            "#" => Some("NARGS".into()),
            "$" => Some("PID".into()),
            "1" => Some("ARGUMENT1".into()),
            "EMPTY" => Some(String::new()),
            "TD" => Some("example.org".into()),
            "A B" => Some("spaced".into()),
            _ => None,
        }
    }

    /// Go's `expandTests` (os/env_test.go) with the same mapping, plus more edge cases.
    #[test]
    fn expand_table() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("$*", "all the args"),
            ("$$", "PID"),
            ("${*}", "all the args"),
            ("$1", "ARGUMENT1"),
            ("${1}", "ARGUMENT1"),
            ("now is the time", "now is the time"),
            ("$HOME", "/usr/gopher"),
            ("$home_1", "/usr/foo"),
            ("${HOME}", "/usr/gopher"),
            ("${H}OME", "(Value of H)OME"),
            ("A$$$#$1$H$home_1*B", "APIDNARGSARGUMENT1(Value of H)/usr/foo*B"),
            ("start$+middle$^end$", "start$+middle$^end$"),
            ("mixed$|bag$$$", "mixed$|bagPID$"),
            ("$", "$"),
            ("$}", "$}"),
            ("${", ""),  // invalid syntax; eat up the characters
            ("${}", ""), // invalid syntax; eat up the characters
            // Beyond Go's table.
            ("$UNSET", ""),
            ("${UNSET}x", "x"),
            ("a${FOO", "aFOO"),
            ("a${}b", "ab"),
            ("${A B}", "spaced"),
            ("$EMPTY|", "|"),
            ("$1abc", "ARGUMENT1abc"),
            ("${12}", ""), // a two-character name, unset
            ("$HOME/x", "/usr/gopher/x"),
            ("$HOME.x", "/usr/gopher.x"),
            ("${HOME}${HOME}", "/usr/gopher/usr/gopher"),
            ("trustDomain: ${TD}\n", "trustDomain: example.org\n"),
            ("- ^kube-.*$\n", "- ^kube-.*$\n"),
            ("x: \"$\"", "x: \"$\""),
            ("cost: $ 5", "cost: $ 5"),
            ("$é", "$é"),
            ("é$HOMEé", "é/usr/gopheré"),
            ("${HOMEé}", ""),
            ("$_", "underscore"),
            ("$_x", ""),
        ];
        for &(input, want) in cases {
            let got = go_expand(input, |n| env(n).unwrap_or_default());
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn expand_env_reports_unset() {
        let (out, unset) = go_expand_env("$A ${B} $HOME $A $$", env);
        assert_eq!(out, "  /usr/gopher  PID");
        assert_eq!(unset, vec!["A".to_owned(), "B".to_owned()]);
    }

    #[test]
    fn process_env_tolerates_odd_names() {
        assert_eq!(process_env(""), None);
        assert_eq!(process_env("A=B"), None);
        assert_eq!(process_env("SCM_CONFIG_TEST_SURELY_UNSET_VARIABLE"), None);
    }
}

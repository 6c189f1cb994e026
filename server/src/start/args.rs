//! The rDSN command line: `pegasus_server <config.ini> [-cargs k=v;…] [-app_list role[;role]]`
//! (any other argument is an error).

use std::path::PathBuf;

use super::StartError;

/// Roles this binary knows.
pub const ROLES: &[&str] = &["meta", "replica", "collector"];

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    /// The config file.
    pub config: PathBuf,
    /// `-cargs` substitutions for `%key%` tokens.
    pub cargs: Vec<(String, String)>,
    /// `-app_list` roles (empty: every role whose `[apps.*]` has `run = true`).
    pub roles: Vec<String>,
}

/// Parses the rDSN-style command line (without the program name).
pub fn parse_args(args: &[String]) -> Result<Args, StartError> {
    let mut iter = args.iter();
    let config = iter
        .next()
        .filter(|c| !c.starts_with('-'))
        .ok_or_else(|| StartError::Usage("the first argument must be the config file".into()))?;
    let mut parsed = Args {
        config: PathBuf::from(config),
        cargs: Vec::new(),
        roles: Vec::new(),
    };
    while let Some(arg) = iter.next() {
        let value = || {
            iter.clone()
                .next()
                .cloned()
                .ok_or_else(|| StartError::Usage(format!("`{arg}` needs a value")))
        };
        match arg.as_str() {
            "-cargs" => {
                let v = value()?;
                iter.next();
                for pair in v.split([';', ',']).filter(|p| !p.is_empty()) {
                    let (k, val) = pair.split_once('=').ok_or_else(|| {
                        StartError::Usage(format!("`-cargs {pair}`: expected key=value"))
                    })?;
                    parsed.cargs.push((k.to_owned(), val.to_owned()));
                }
            }
            "-app_list" => {
                let v = value()?;
                iter.next();
                for role in v.split([';', ',']).filter(|r| !r.is_empty()) {
                    // `replica@2` names an instance; this server runs one instance per role.
                    let name = role.split('@').next().unwrap_or(role);
                    if !ROLES.contains(&name) {
                        return Err(StartError::Usage(format!(
                            "unknown role `{name}` in -app_list (roles: meta, replica, collector)"
                        )));
                    }
                    parsed.roles.push(name.to_owned());
                }
            }
            other => return Err(StartError::Usage(format!("unknown argument `{other}`"))),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args, StartError> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_rdsn_command_line() {
        let a = args(&[
            "config.ini",
            "-app_list",
            "meta;replica@1",
            "-cargs",
            "port=1;dir=/x",
        ])
        .unwrap();
        assert_eq!(a.roles, ["meta", "replica"]);
        assert_eq!(
            a.cargs,
            [
                ("port".to_owned(), "1".to_owned()),
                ("dir".to_owned(), "/x".to_owned())
            ]
        );
        assert_eq!(
            args(&["config.ini", "-app_list", "meta,replica"])
                .unwrap()
                .roles,
            ["meta", "replica"]
        );
        assert!(matches!(
            args(&["config.ini", "--bogus"]),
            Err(StartError::Usage(_))
        ));
        assert!(matches!(
            args(&["config.ini", "-app_list", "proxy"]),
            Err(StartError::Usage(_))
        ));
        assert!(matches!(
            args(&["-app_list", "meta"]),
            Err(StartError::Usage(_))
        ));
        assert!(matches!(
            args(&["config.ini", "-app_list"]),
            Err(StartError::Usage(_))
        ));
    }
}

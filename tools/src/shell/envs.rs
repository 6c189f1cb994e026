//! `get_app_envs`, `set_app_envs`, `del_app_envs`, `clear_app_envs`: the environments of the table
//! in use.

use std::fmt::Write as _;

use pegasus_protocol::types::*;

use super::{Line, Output, Shell, describe, flag, option, pretty};

impl Shell {
    /// Runs `c` if it is a command of table environments; `None` if it is not.
    pub(super) async fn run_envs(&mut self, c: &Line<'_>) -> Option<Output> {
        let out = match c.name {
            "get_app_envs" => self.get_app_envs(c.json).await,
            "set_app_envs" => self.set_app_envs(&c.positional).await,
            "del_app_envs" => self.del_app_envs(&c.positional).await,
            "clear_app_envs" => {
                let prefix = if flag(c.rest, "-a") {
                    Some(String::new())
                } else {
                    option(c.rest, "-p")
                };
                match prefix {
                    Some(prefix) => self.clear_app_envs(prefix).await,
                    None => Err("usage: clear_app_envs [-a | -p prefix]".into()),
                }
            }
            _ => return None,
        };
        Some(out)
    }

    /// The table in use, for the env commands.
    pub(super) fn current(&self) -> Result<String, String> {
        self.current
            .clone()
            .ok_or_else(|| "no table in use: `use <table>` first".to_owned())
    }

    pub(super) async fn get_app_envs(&self, json: bool) -> Output {
        let name = self.current()?;
        let envs = self.client.app_envs(&name).await.map_err(describe)?;
        if json {
            return pretty(&serde_json::json!({ "app_envs": envs }));
        }
        let mut out = String::from("[app_envs]\n");
        let width = envs.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &envs {
            let _ = writeln!(out, "{k:<width$} : {v}");
        }
        Ok(out)
    }

    pub(super) async fn update_envs(
        &self,
        op: i32,
        keys: Vec<String>,
        values: Vec<String>,
        prefix: Option<String>,
    ) -> Output {
        let name = self.current()?;
        let request = UpdateAppEnvRequest {
            app_name: name,
            op,
            keys: (op != app_env_operation::CLEAR).then_some(keys),
            values: (op == app_env_operation::SET).then_some(values),
            clear_prefix: prefix,
        };
        match self.client.update_app_env(request).await {
            Ok(hint) => Ok(format!(
                "{} app envs succeed ({hint})",
                ["set", "del", "clear"][(op - 1) as usize]
            )),
            Err(e) => Err(format!("update app envs failed: {e}")),
        }
    }

    pub(super) async fn set_app_envs(&self, args: &[&String]) -> Output {
        let [k, v] = args else {
            return Err("usage: set_app_envs <key> <value>".into());
        };
        configcheck::envs::check(k, v)?;
        self.update_envs(
            app_env_operation::SET,
            vec![(*k).clone()],
            vec![(*v).clone()],
            None,
        )
        .await
    }

    pub(super) async fn del_app_envs(&self, args: &[&String]) -> Output {
        if args.is_empty() {
            return Err("usage: del_app_envs <key>…".into());
        }
        let keys = args.iter().map(|k| (*k).clone()).collect();
        self.update_envs(app_env_operation::DEL, keys, Vec::new(), None)
            .await
    }

    pub(super) async fn clear_app_envs(&self, prefix: String) -> Output {
        self.update_envs(
            app_env_operation::CLEAR,
            Vec::new(),
            Vec::new(),
            Some(prefix),
        )
        .await
    }
}

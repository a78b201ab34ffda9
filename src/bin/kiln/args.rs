//! A small argument parser: positionals, `--name value` options (repeatable), `--flag`s.

use anyhow::{Context, Result, bail};

pub struct Args {
    pub positional: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

impl Args {
    /// Parse `args`; names in `flags` take no value; `short` maps one-letter options
    /// (`-p`) to the long ones they stand for.
    pub fn parse(
        args: impl Iterator<Item = String>,
        flags: &[&str],
        short: &[(&str, &str)],
    ) -> Result<Args> {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let mut it = args;
        while let Some(a) = it.next() {
            let long = a.strip_prefix('-').and_then(|s| {
                short
                    .iter()
                    .find(|(letter, _)| *letter == s)
                    .map(|(_, long)| *long)
            });
            if let Some(name) = long.or_else(|| a.strip_prefix("--")) {
                if flags.contains(&name) {
                    options.push((name.to_string(), None));
                } else {
                    let v = it
                        .next()
                        .with_context(|| format!("--{name} needs a value"))?;
                    options.push((name.to_string(), Some(v)));
                }
            } else {
                positional.push(a);
            }
        }
        Ok(Args {
            positional,
            options,
        })
    }

    /// Refuse options the command does not know.
    pub fn allow(&self, known: &[&str], usage: &str) -> Result<()> {
        for (n, _) in &self.options {
            if !known.contains(&n.as_str()) {
                bail!("unknown option --{n}\n\n{usage}");
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.options
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    pub fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| n == name)
    }

    /// A parsed value, or `default` when absent.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("--{name} {v}: {e}")),
        }
    }
}

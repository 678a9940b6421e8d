//! A builder over the host's `process` interface, shaped like
//! `std::process::Command` so it reads familiar.

use crate::PluginError;
use crate::bindings::opsd::plugin::process as host;

pub use host::{ExecError, Exit, Input, Output};

/// A program run through the job's `exec` grant.
pub struct Command {
    inner: host::Command,
}

impl Command {
    /// A command for `program`, which must be named in the job's `exec`
    /// grant (by the same name, or the absolute path written there).
    pub fn new(program: &str) -> Self {
        Self {
            inner: host::Command {
                program: program.into(),
                args: Vec::new(),
                cwd: None,
                env: Vec::new(),
                stdin: Input::None,
                stdout: Output::Capture,
                stderr: Output::Capture,
                timeout_ms: None,
            },
        }
    }

    /// Appends one argument; no shell is involved, so no quoting is needed.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.inner.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs in a guest directory inside a grant.
    pub fn cwd(mut self, dir: &str) -> Self {
        self.inner.cwd = Some(dir.into());
        self
    }

    /// Sets a variable the job's `env` grant names.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.inner.env.push((name.into(), value.into()));
        self
    }

    /// Feeds the child from bytes or a guest file.
    pub fn stdin(mut self, input: Input) -> Self {
        self.inner.stdin = input;
        self
    }

    /// Sends standard output somewhere other than the captured result.
    pub fn stdout(mut self, output: Output) -> Self {
        self.inner.stdout = output;
        self
    }

    /// Sends standard error somewhere other than the captured result.
    pub fn stderr(mut self, output: Output) -> Self {
        self.inner.stderr = output;
        self
    }

    /// Limits this call; the host never lets it outlive the job's timeout.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.inner.timeout_ms = Some(ms);
        self
    }

    /// Runs the program to completion.
    pub fn run(&self) -> Result<Exit, ExecError> {
        host::run(&self.inner)
    }

    /// Runs the program and insists that it succeed: a refusal, a failure
    /// to start or a non-zero exit becomes an `exec` error that says
    /// `what` was being done and quotes the program's stderr.
    pub fn run_checked(&self, what: &str) -> Result<Exit, PluginError> {
        let exit = self
            .run()
            .map_err(|e| PluginError::other("exec", format!("{what}: {}", e.text())))?;
        if !exit.success() {
            return Err(PluginError::other(
                "exec",
                format!(
                    "{what} exited with {}: {}",
                    exit.status_text(),
                    exit.stderr_text()
                ),
            ));
        }
        Ok(exit)
    }
}

impl ExecError {
    /// Why the program did not run, in words (the host's own text): what
    /// a message shows instead of the variant's debug form.
    pub fn text(&self) -> String {
        match self {
            ExecError::Denied(why) => format!("refused: {why}"),
            ExecError::Spawn(why) => format!("could not start: {why}"),
            ExecError::Timeout(ms) => format!("killed after its time limit of {ms} ms"),
            ExecError::Io(why) => format!("input or output file: {why}"),
        }
    }
}

impl Exit {
    /// True when the program exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// How the program ended, for messages: `1`, or `signal 9`.
    pub fn status_text(&self) -> String {
        match self.code {
            Some(code) => code.to_string(),
            None => format!("signal {}", self.signal.unwrap_or(0)),
        }
    }

    /// Captured standard error as text, for error messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

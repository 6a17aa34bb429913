//! Where plugin logs go, and the budget that keeps one call from flooding them.

use crate::contract::types::LogLevel;
use std::io::Write;
use std::sync::Mutex;

/// Bytes of log text one call may write (guest stdout/stderr included).
pub const CALL_LOG_BUDGET: usize = 64 * 1024;
/// Longest single log line kept; longer ones are cut with a note of the original length.
pub const LOG_LINE_MAX: usize = 4 * 1024;

fn rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        LogLevel::Error => 4,
    }
}

/// Parses `trace|debug|info|warn|error`.
pub fn parse_level(s: &str) -> Option<LogLevel> {
    Some(match s.to_ascii_lowercase().as_str() {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        _ => return None,
    })
}

/// Where plugin logs go.
pub struct Log {
    min: LogLevel,
    memory: Option<Mutex<Vec<(LogLevel, String)>>>,
}

impl Log {
    /// Lines at `min` or above to stderr.
    pub fn stderr(min: LogLevel) -> Self {
        Log { min, memory: None }
    }

    /// Every line kept in memory (tests read them back).
    pub fn memory() -> Self {
        Log {
            min: LogLevel::Trace,
            memory: Some(Mutex::new(Vec::new())),
        }
    }

    /// A log at the same level to the same kind of place (a memory log starts empty): what
    /// a tenant's instance of a channel writes to.
    pub fn like(&self) -> Self {
        match self.memory {
            Some(_) => Log::memory(),
            None => Log::stderr(self.min),
        }
    }

    pub fn write(&self, level: LogLevel, message: &str) {
        if rank(level) < rank(self.min) {
            return;
        }
        match &self.memory {
            Some(m) => m
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((level, message.to_string())),
            None => {
                let _ = writeln!(std::io::stderr(), "[plugin {level:?}] {message}");
            }
        }
    }

    /// The lines kept so far (empty for stderr logs).
    pub fn lines(&self) -> Vec<(LogLevel, String)> {
        self.memory
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }
}

/// One call's log allowance: lines are cut at [`LOG_LINE_MAX`], and once [`CALL_LOG_BUDGET`]
/// bytes are written the rest is dropped, with one line saying so.
#[derive(Debug)]
pub struct CallLogBudget {
    left: usize,
    dropped: usize,
}

impl Default for CallLogBudget {
    fn default() -> Self {
        CallLogBudget {
            left: CALL_LOG_BUDGET,
            dropped: 0,
        }
    }
}

impl CallLogBudget {
    /// Writes a line if the budget allows.
    pub fn write(&mut self, log: &Log, level: LogLevel, message: &str) {
        if self.left == 0 {
            self.dropped = self.dropped.saturating_add(message.len());
            return;
        }
        let mut line = cut(message, LOG_LINE_MAX.min(self.left));
        if line.len() < message.len() {
            line = format!("{line}… (cut: {} bytes in all)", message.len());
        }
        self.left = self.left.saturating_sub(line.len().max(1));
        log.write(level, &line);
        if self.left == 0 {
            log.write(
                LogLevel::Warn,
                &format!("log budget of {CALL_LOG_BUDGET} bytes for this call used up; further lines are dropped"),
            );
        }
    }

    /// Bytes dropped after the budget ran out.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_cannot_write_more_than_its_budget() {
        let log = Log::memory();
        let mut budget = CallLogBudget::default();
        let huge = "é".repeat(1 << 20);
        for _ in 0..100 {
            budget.write(&log, LogLevel::Info, &huge);
        }
        let written: usize = log.lines().iter().map(|(_, l)| l.len()).sum();
        assert!(written <= CALL_LOG_BUDGET + 200, "{written}");
        assert!(log.lines()[0].1.contains("cut: 2097152 bytes"));
        assert!(log.lines().last().unwrap().1.contains("used up"));
        assert!(budget.dropped() > 0);
    }
}

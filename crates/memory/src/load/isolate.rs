//! Running a parser that may panic or hang on bad input: on its own thread, with the panic caught
//! and a time limit on the wait.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Stack for the parser's thread: deeply nested (but finite) documents recurse deeply, and a stack
/// overflow aborts the whole process instead of unwinding. Only touched pages are committed.
const STACK_BYTES: usize = 64 * 1024 * 1024;

/// Why an isolated run gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Isolated {
    /// It panicked; the panic's message.
    Panicked(String),
    /// It was still running when the time limit ran out.
    TimedOut,
    /// The thread could not be started (the operating system's message).
    NoThread(String),
}

/// Runs `work` on a new thread named `name` and waits at most `limit` for its result.
///
/// A panic in `work` is caught and returned as [`Isolated::Panicked`]. The process's panic hook
/// still runs first, so the default hook prints `thread '<name>' panicked at …` to stderr; a
/// library must not replace the global hook, so an application that wants silence installs its
/// own.
///
/// On time-out the thread is **abandoned, not stopped** (Rust cannot kill a thread): it runs on
/// until `work` returns, holding its memory and a core, and its result is dropped. A parser stuck
/// in an endless loop keeps its thread until the process exits. Pass only owned input, so the
/// caller never waits on it.
pub(crate) fn run_isolated<T, F>(name: &str, limit: Duration, work: F) -> Result<T, Isolated>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (sender, receiver) = mpsc::sync_channel(1);
    let spawned = thread::Builder::new()
        .name(name.to_owned())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            // `work` owns everything it touches, and nothing of it is used after a panic.
            let result = panic::catch_unwind(AssertUnwindSafe(work));
            // The receiver is gone after a time-out; the result is then dropped.
            let _ = sender.send(result);
        });
    if let Err(error) = spawned {
        return Err(Isolated::NoThread(error.to_string()));
    }
    match receiver.recv_timeout(limit) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(payload)) => Err(Isolated::Panicked(panic_message(payload.as_ref()))),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Isolated::TimedOut),
        // Only if sending itself failed to happen, e.g. dropping the panic payload panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Isolated::Panicked(
            "the parser's thread ended without a result".to_owned(),
        )),
    }
}

/// The text of a panic: `panic!("…")` carries a `&str` or a `String`; anything else is unnamed.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with no message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn returns_the_value() {
        assert_eq!(
            run_isolated("t-ok", Duration::from_secs(5), || 6 * 7),
            Ok(42)
        );
    }

    #[test]
    fn catches_a_panic_with_its_message() {
        let result: Result<(), _> =
            run_isolated("t-panic-str", Duration::from_secs(5), || panic!("bad xref"));
        assert_eq!(result, Err(Isolated::Panicked("bad xref".to_owned())));

        let n = 3;
        let result: Result<(), _> =
            run_isolated("t-panic-fmt", Duration::from_secs(5), move || {
                panic!("page {n} has no MediaBox")
            });
        assert_eq!(
            result,
            Err(Isolated::Panicked("page 3 has no MediaBox".to_owned()))
        );
    }

    #[test]
    fn catches_an_index_out_of_bounds_and_an_unwrap() {
        let result = run_isolated("t-index", Duration::from_secs(5), || {
            let v: Vec<u8> = std::hint::black_box(Vec::new());
            v[3]
        });
        match result {
            Err(Isolated::Panicked(message)) => assert!(message.contains("index out of bounds")),
            other => panic!("unexpected {other:?}"),
        }
        #[allow(clippy::unwrap_used)]
        fn parse(s: &str) -> u32 {
            s.parse().unwrap()
        }
        let result = run_isolated("t-unwrap", Duration::from_secs(5), || parse("x"));
        match result {
            Err(Isolated::Panicked(message)) => {
                assert!(message.contains("called `Result::unwrap()`"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn gives_up_after_the_limit_and_abandons_the_thread() {
        let started = Instant::now();
        let result = run_isolated("t-sleep", Duration::from_millis(100), || {
            thread::sleep(Duration::from_secs(3));
            1
        });
        assert_eq!(result, Err(Isolated::TimedOut));
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    }

    #[test]
    fn a_panic_payload_that_is_not_text() {
        let result: Result<(), _> = run_isolated("t-any", Duration::from_secs(5), || {
            std::panic::panic_any(17_u32)
        });
        assert_eq!(
            result,
            Err(Isolated::Panicked("a panic with no message".to_owned()))
        );
    }
}

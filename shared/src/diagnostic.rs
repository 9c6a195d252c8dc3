//! One rule for how a function's error reaches the Lambda runtime: `error_type` is
//! `<Function>.<Retryable|Permanent>.<Variant>`, so alarms and log queries tell retries from
//! permanent failures without parsing messages. Permanent errors still fail the invocation (an
//! async on-failure destination then keeps the event); the name only says what kind it was.

pub use lambda_runtime::Diagnostic;

/// A function's error type, classified once for [`diagnostic`].
pub trait FunctionError: std::fmt::Display {
    /// The function's name as it leads `error_type`, e.g. `Store`.
    const FUNCTION: &'static str;
    /// Whether running the invocation again can succeed.
    fn is_retryable(&self) -> bool;
    /// The variant's name, the last part of `error_type`.
    fn variant(&self) -> &'static str;
}

/// The runtime's `Diagnostic` for `e`.
pub fn diagnostic<E: FunctionError>(e: &E) -> Diagnostic {
    let kind = if e.is_retryable() {
        "Retryable"
    } else {
        "Permanent"
    };
    Diagnostic {
        error_type: format!("{}.{kind}.{}", E::FUNCTION, e.variant()),
        error_message: e.to_string(),
    }
}

/// `impl From<$error> for Diagnostic` through [`diagnostic`] (the orphan rule forbids a blanket
/// impl over [`FunctionError`]).
#[macro_export]
macro_rules! impl_diagnostic {
    ($error:ty) => {
        impl From<$error> for $crate::diagnostic::Diagnostic {
            fn from(e: $error) -> Self {
                $crate::diagnostic::diagnostic(&e)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum Failure {
        Busy,
        Broken,
    }

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Failure::Busy => "busy",
                Failure::Broken => "broken",
            })
        }
    }

    impl FunctionError for Failure {
        const FUNCTION: &'static str = "Demo";
        fn is_retryable(&self) -> bool {
            matches!(self, Failure::Busy)
        }
        fn variant(&self) -> &'static str {
            match self {
                Failure::Busy => "Busy",
                Failure::Broken => "Broken",
            }
        }
    }

    impl_diagnostic!(Failure);

    #[test]
    fn error_type_names_function_kind_and_variant() {
        let d = Diagnostic::from(Failure::Busy);
        assert_eq!(d.error_type, "Demo.Retryable.Busy");
        assert_eq!(d.error_message, "busy");
        assert_eq!(
            Diagnostic::from(Failure::Broken).error_type,
            "Demo.Permanent.Broken"
        );
    }
}

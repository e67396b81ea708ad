//! Postgres's text form of `float4`/`float8`: the shortest digits that read
//! back exactly (Postgres 12+ with the default `extra_float_digits = 1`),
//! in `%g` style: `120`, `1.5`, `1e+20`, `1.5e-05`, `NaN`, `-Infinity`.
//! Rust's `Display` prints `120` as `120` but `1e20` as
//! `100000000000000000000`, and arrow-pg prints `120.0`; drivers parse both,
//! but psql users and `.slt` expectations see the difference.

/// Formats an `f64` as Postgres's `float8out` does.
pub fn format_f64(value: f64) -> String {
    // DBL_DIG: Postgres switches to exponent form from 1e15 on.
    format_shortest(value, format!("{value:e}"), 15)
}

/// Formats an `f32` as Postgres's `float4out` does.
pub fn format_f32(value: f32) -> String {
    // FLT_DIG: exponent form from 1e6 on.
    format_shortest(f64::from(value), format!("{value:e}"), 6)
}

/// `scientific` is Rust's shortest round-trip digits in `{:e}` form
/// (`1.5e-5`), which fixes the digits; Postgres's rule picks the layout.
fn format_shortest(value: f64, scientific: String, max_fixed_exponent: i32) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return scientific;
    };
    if exponent < -4 || exponent >= max_fixed_exponent {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    // Fixed notation from the same digits.
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let point = exponent + 1; // digits before the decimal point
    let mut out = String::with_capacity(digits.len() + 4);
    if negative {
        out.push('-');
    }
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_like_postgres() {
        for (value, text) in [
            (120.0, "120"),
            (1.5, "1.5"),
            (-0.25, "-0.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1e20, "1e+20"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(format_f64(value), text, "{value:?}");
        }
    }

    #[test]
    fn float4_like_postgres() {
        for (value, text) in [
            (100000.0f32, "100000"),
            (1000000.0, "1e+06"),
            (0.1, "0.1"),
            (2.5, "2.5"),
        ] {
            assert_eq!(format_f32(value), text, "{value:?}");
        }
    }
}

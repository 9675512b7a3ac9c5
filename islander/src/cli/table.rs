//! Plain-text tables as `docker ps` prints them: columns left-aligned to
//! their widest cell, three spaces apart, the last column unpadded.

/// Renders `rows` (the header first) one line each.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_is_not_padded() {
        let rows = vec![
            vec!["ID".to_string(), "NAME".to_string(), "STATUS".to_string()],
            vec!["abc".to_string(), "x".to_string(), "running".to_string()],
        ];
        assert_eq!(render(&rows), "ID    NAME   STATUS\nabc   x      running\n");
    }
}

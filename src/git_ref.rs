//! Branch and tag names as git's `check-ref-format` takes them: the client checks `skiff up URL@BRANCH` before
//! anything is made, and the agent checks again before the name reaches `git clone --branch`.

/// Why `name` is not a branch or tag name git would take, or `Ok` when it is one.
pub fn check(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.starts_with('-') {
        return Err("it begins with -");
    }
    if name
        .chars()
        .any(|character| character.is_control() || " ~^:?*[\\".contains(character))
    {
        return Err("it holds a space, a control character or one of ~ ^ : ? * [ \\");
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") {
        return Err("it holds .., @{ or //");
    }
    if name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with('.')
        || name.ends_with(".lock")
        || name.split('/').any(|part| part.starts_with('.'))
        || name == "@"
    {
        return Err("git does not allow that form of name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_git_would_take_pass_and_the_rest_are_refused() {
        for good in [
            "main",
            "feature/login",
            "v1.2.3",
            "release-2026.12",
            "ünïcode",
        ] {
            super::check(good).unwrap();
        }
        for bad in [
            "",
            "-b",
            "--upload-pack=touch /tmp/pwned",
            "a b",
            "a..b",
            "a~1",
            "a^",
            "a:b",
            "refs/*",
            "a\\b",
            "a@{1}",
            "/a",
            "a/",
            "a.lock",
            ".hidden",
            "a/.b",
            "a\nb",
            "@",
        ] {
            assert!(super::check(bad).is_err(), "{bad:?}");
        }
    }
}

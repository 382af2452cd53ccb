//! The system prompt (agent-behaviour §9: same sections and intent as the reference's, in this
//! server's own words) and the agent-context additions (§3.1.4): repository skills and the
//! system suffix appended to the prompt, keyword-triggered knowledge and the user suffix added to
//! user messages.

use serde_json::Value;

use crate::tools::text_part;

const INTRO: &str = "You are OpenHands agent, a capable AI assistant that works on a computer to carry out the tasks people give you.";

const ROLE: &str = "<ROLE>
Your main job is to help the user by running commands, editing code and solving technical problems thoroughly and \
carefully. Keep the user's intent in focus:
* When the user asks a question (for example \"why does this test fail?\"), answer it; do not start changing code \
unless asked to.
* When the user asks for a change, make it completely, and check that it works.
</ROLE>";

const EFFICIENCY: &str = "<EFFICIENCY>
* Every action has a cost. Combine steps that belong together, for example several shell commands chained with `&&` \
or several related edits at once, instead of many tiny steps.
* When exploring a code base, use fast search tools (`find`, `grep`, `git grep`, `rg`) with sensible filters rather \
than opening files one by one.
</EFFICIENCY>";

const FILE_SYSTEM: &str = "<FILE_SYSTEM_GUIDELINES>
* When the user mentions a file path, do not assume it is relative to the current directory: locate the file first \
(for example with `find` or by listing directories) before reading or editing it.
* When asked to change a file, edit it in place. Do not create a copy under another name.
* Never leave several versions of one file behind (such as `file_fixed.py`, `file_v2.py`, `file_new.py`): one \
file, updated as needed.
* If you create files only to experiment, test or debug, delete them when you are done unless the user wants to \
keep them.
* Do not add documentation files (notes, summaries, reports) to version control unless the user explicitly asks for \
them.
* Think twice before deleting or moving files; make sure nothing else depends on them.
</FILE_SYSTEM_GUIDELINES>";

const CODE_QUALITY: &str = "<CODE_QUALITY>
* Write clean, efficient code and keep comments short: explain why, not what.
* Understand the existing code before changing it: read the surrounding code, follow its conventions, naming and \
structure.
* Make the smallest change that solves the problem properly; avoid unrelated rewrites.
* When a file or function grows too large, split it into smaller, well-named pieces.
* Put imports at the top of files unless there is a real reason not to (circular imports, optional dependencies, \
expensive modules).
</CODE_QUALITY>";

const VERSION_CONTROL: &str = "<VERSION_CONTROL>
* If the repository already has a git user name and email configured, use them. Otherwise commit as \"openhands\" \
with the email \"openhands@all-hands.dev\", and add a `Co-authored-by: openhands <openhands@all-hands.dev>` line to \
commit messages you write on the user's behalf.
* Be careful with anything that rewrites or publishes history: never push to the main branch, force-push or delete \
branches unless the user explicitly asks for it.
* Stage files deliberately: check `git status` and stage only what belongs to the change; never blindly commit \
everything with `git add .` or `git commit -a`.
* Do not commit build output, caches, dependency folders, logs, secrets or editor files; add a `.gitignore` entry \
when such files show up.
* When unsure whether to commit at all, ask the user.
</VERSION_CONTROL>";

const PULL_REQUESTS: &str = "<PULL_REQUESTS>
* Open a pull request only when the user asks for one.
* Use one pull request per task; when more work is needed on the same task, push to the existing branch and update \
the existing pull request instead of opening a new one.
* Keep the title and description accurate when the change evolves.
</PULL_REQUESTS>";

const WORKFLOW: &str = "<PROBLEM_SOLVING_WORKFLOW>
1. Explore: look at the relevant files and the surrounding code until you understand how things fit together.
2. Analyse: think about possible approaches and choose the most promising one; for non-trivial problems, consider \
several.
3. Test: for bug fixes, first write a test or a small script that reproduces the problem and confirms the failure.
   * If the project has a test framework, use it; if the tests need a lot of set-up that is not there, write a \
     focused script instead of building test infrastructure.
   * Do not spend a long time building test tooling the user did not ask for.
4. Implement: make focused, minimal changes that address the cause, not just the symptom.
5. Verify: run the reproduction again and the relevant existing tests, and fix what you broke. If something cannot \
be verified, say so.
</PROBLEM_SOLVING_WORKFLOW>";

const SECURITY: &str = "<SECURITY>
* You may use the credentials and tools the user provides (API keys, tokens, access to services) for the task they \
gave you.
* Ask for explicit consent before doing anything that sends the user's code, data or credentials to a third party, \
or that could expose them publicly (for example uploading files, creating public repositories or gists).
* Never try to get around access controls, steal or leak credentials, attack systems, or do anything destructive \
the user did not clearly ask for.
* Handle secrets carefully: do not print them needlessly, do not write them into files under version control, and \
do not include them in commit messages or pull requests.
</SECURITY>";

const RISK_ASSESSMENT: &str = "<SECURITY_RISK_ASSESSMENT>
Every tool call that can change something takes a `security_risk` argument. Set it honestly:
* LOW: read-only actions with no side effects, such as viewing files, listing directories or searching.
* MEDIUM: changes confined to the project or workspace, such as editing project files or running the project's own \
code and tests.
* HIGH: actions with system-wide or irreversible effects, such as installing or removing system software, deleting \
data, changing system configuration, running untrusted code, or sending data out of the environment.
Anything that transfers code, data or credentials outside the environment is always HIGH.
</SECURITY_RISK_ASSESSMENT>";

const EXTERNAL_SERVICES: &str = "<EXTERNAL_SERVICES>
* For GitHub, GitLab, Bitbucket and similar services, prefer their APIs (with the token you were given) or their \
command-line tools over driving a web browser.
* Only fall back to browsing when no API or tool can do the job.
</EXTERNAL_SERVICES>";

const ENVIRONMENT_SETUP: &str = "<ENVIRONMENT_SETUP>
* If the user asks you to run an application that is not installed, install it and try again.
* If a command fails because a dependency is missing, install the dependency and retry.
* Prefer the project's own dependency files (`requirements.txt`, `pyproject.toml`, `package.json`, `Cargo.toml`, \
`go.mod`, …) and its package manager to install everything at once, rather than installing packages one by one.
* Do not change versions of dependencies the project pins unless that is part of the task.
</ENVIRONMENT_SETUP>";

const TROUBLESHOOTING: &str = "<TROUBLESHOOTING>
* If the same approach has failed several times, stop and step back: list five to seven possible causes, rank them \
by likelihood, and check them one by one, starting with the most likely.
* When you hit a blocker, propose a new plan to the user instead of quietly working around it or weakening the \
requirements.
</TROUBLESHOOTING>";

const PROCESS_MANAGEMENT: &str = "<PROCESS_MANAGEMENT>
* To stop a process, find its process id (for example with `ps aux | grep name`) and kill that specific id.
* Never use broad commands such as `pkill -f` or `killall` that may hit processes you did not start.
* Run long-lived processes (servers, watchers) in the background and redirect their output to a log file.
</PROCESS_MANAGEMENT>";

/// The rendered system prompt for `system_prompt_kwargs` (only `llm_security_analyzer` changes
/// the text: it defaults to true and adds the risk-assessment section).
pub fn system_prompt(system_prompt_kwargs: &Value) -> String {
    let with_risk = system_prompt_kwargs
        .get("llm_security_analyzer")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut sections = vec![
        INTRO,
        ROLE,
        EFFICIENCY,
        FILE_SYSTEM,
        CODE_QUALITY,
        VERSION_CONTROL,
        PULL_REQUESTS,
        WORKFLOW,
        SECURITY,
    ];
    if with_risk {
        sections.push(RISK_ASSESSMENT);
    }
    sections.extend([
        EXTERNAL_SERVICES,
        ENVIRONMENT_SETUP,
        TROUBLESHOOTING,
        PROCESS_MANAGEMENT,
    ]);
    sections.join("\n\n")
}

/// The system prompt of an agent (`{"system_prompt_kwargs", "agent_context", …}`): the base
/// prompt, then, after a blank line, repository skills and `system_message_suffix`.
pub fn agent_system_prompt(agent: &Value) -> String {
    let mut prompt = system_prompt(agent.get("system_prompt_kwargs").unwrap_or(&Value::Null));
    let Some(ctx) = agent.get("agent_context").filter(|c| c.is_object()) else {
        return prompt;
    };
    let repo_skills: Vec<&Value> = ctx
        .get("skills")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.get("trigger").is_none_or(Value::is_null))
        .collect();
    let mut extra = Vec::new();
    if !repo_skills.is_empty() {
        let mut block = String::from(
            "<REPO_CONTEXT>\nThe following instructions come from files in the user's repository. Follow them while you work.\n",
        );
        for s in repo_skills {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            let content = s.get("content").and_then(Value::as_str).unwrap_or_default();
            block.push_str(&format!(
                "\n[BEGIN context from [{name}]]\n{}\n[END Context]\n",
                content.trim()
            ));
        }
        block.push_str("</REPO_CONTEXT>");
        extra.push(block);
    }
    if let Some(suffix) = ctx
        .get("system_message_suffix")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
    {
        extra.push(suffix.trim().to_string());
    }
    if !extra.is_empty() {
        prompt.push_str("\n\n");
        prompt.push_str(&extra.join("\n\n"));
    }
    prompt
}

/// What the agent context adds to a user message (§3.1.4): the `extended_content` parts and the
/// names of skills it activates. `already_activated` = the state's `activated_knowledge_skills`.
pub fn user_message_extension(
    agent: &Value,
    message_text: &str,
    already_activated: &[String],
) -> (Vec<Value>, Vec<String>) {
    let Some(ctx) = agent.get("agent_context").filter(|c| c.is_object()) else {
        return (Vec::new(), Vec::new());
    };
    let lower = message_text.to_lowercase();
    let mut blocks = Vec::new();
    let mut activated = Vec::new();
    for skill in ctx
        .get("skills")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = skill
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(trigger) = skill.get("trigger").filter(|t| t.is_object()) else {
            continue;
        };
        let words: Vec<&str> = trigger
            .get("keywords")
            .or_else(|| trigger.get("triggers"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let Some(hit) = words
            .into_iter()
            .find(|k| !k.is_empty() && lower.contains(&k.to_lowercase()))
        else {
            continue;
        };
        if already_activated.contains(&name) || activated.contains(&name) {
            continue;
        }
        let content = skill
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        blocks.push(format!(
            "<EXTRA_INFO>\nThe following information was added because the message matched the keyword \"{hit}\".\nIt may or may not be relevant to the request.\n\n{}\n</EXTRA_INFO>",
            content.trim()
        ));
        activated.push(name);
    }
    let mut text = blocks.join("\n");
    if let Some(suffix) = ctx
        .get("user_message_suffix")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
    {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(suffix.trim());
    }
    if text.is_empty() {
        (Vec::new(), activated)
    } else {
        (vec![text_part(&text)], activated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_has_the_reference_sections_in_order() {
        let p = system_prompt(&json!({"llm_security_analyzer": true}));
        let tags = [
            "<ROLE>",
            "<EFFICIENCY>",
            "<FILE_SYSTEM_GUIDELINES>",
            "<CODE_QUALITY>",
            "<VERSION_CONTROL>",
            "<PULL_REQUESTS>",
            "<PROBLEM_SOLVING_WORKFLOW>",
            "<SECURITY>",
            "<SECURITY_RISK_ASSESSMENT>",
            "<EXTERNAL_SERVICES>",
            "<ENVIRONMENT_SETUP>",
            "<TROUBLESHOOTING>",
            "<PROCESS_MANAGEMENT>",
        ];
        let positions: Vec<usize> = tags
            .iter()
            .map(|t| p.find(t).unwrap_or_else(|| panic!("{t} missing")))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        assert!(p.len() > 6000 && p.len() < 12000, "length {}", p.len());
        assert!(
            !system_prompt(&json!({"llm_security_analyzer": false}))
                .contains("<SECURITY_RISK_ASSESSMENT>")
        );
        assert!(system_prompt(&Value::Null).contains("<SECURITY_RISK_ASSESSMENT>"));
    }

    #[test]
    fn agent_context_extends_prompt_and_messages() {
        let agent = json!({"system_prompt_kwargs": {}, "agent_context": {"skills": [
            {"name": "repo", "content": "Use tabs.", "trigger": null},
            {"name": "magic", "content": "The magic word was said.", "trigger": {"type": "keyword", "keywords": ["flarglebargle"]}}],
            "system_message_suffix": "SYSTEM SUFFIX", "user_message_suffix": "USER SUFFIX HERE"}});
        let p = agent_system_prompt(&agent);
        assert!(p.ends_with("[BEGIN context from [repo]]\nUse tabs.\n[END Context]\n</REPO_CONTEXT>\n\nSYSTEM SUFFIX"));
        let (parts, activated) =
            user_message_extension(&agent, "please do the task FlargleBargle", &[]);
        assert_eq!(activated, ["magic"]);
        let text = parts[0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("<EXTRA_INFO>\n")
                && text.contains("The magic word was said.")
                && text.ends_with("</EXTRA_INFO>\nUSER SUFFIX HERE")
        );
        let (parts, activated) =
            user_message_extension(&agent, "flarglebargle again", &["magic".to_string()]);
        assert!(activated.is_empty());
        assert_eq!(parts[0]["text"], "USER SUFFIX HERE");
        assert_eq!(
            user_message_extension(&json!({"agent_context": null}), "x", &[]),
            (vec![], vec![])
        );
    }
}

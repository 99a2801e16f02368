//! `skiff aws-setup --budget USD --alert-email ADDRESS`: one monthly AWS Budget, [`BUDGET_NAME`], for the cost of
//! everything tagged `skiff:workspace` (instances, volumes, spot requests), with two e-mail alerts: actual spend
//! past 80 % of the limit, and the month's forecast past 100 %. Run again, it updates the limit and the address;
//! `--budget none` removes it.
//!
//! AWS Budgets sees a tag only once it is activated as a cost allocation tag (Billing console, "Cost allocation
//! tags", `skiff:workspace`); the report says so. Like the rest of `aws-setup`, this runs with an administrator's
//! credentials (`budgets:ModifyBudget`, `budgets:ViewBudget`), never the developer's policy.

use aws_sdk_budgets::types::{
    Budget, BudgetType, ComparisonOperator, Expression, MatchOption, Notification,
    NotificationType, NotificationWithSubscribers, Spend, Subscriber, SubscriptionType, TagValues,
    ThresholdType, TimeUnit,
};

use super::{Aws, TAG_WORKSPACE, aws_error, error_code};

/// The one budget skiff keeps in an account.
pub const BUDGET_NAME: &str = "skiff-workspaces";
/// Budgets is global; its endpoint is in us-east-1.
const BUDGETS_REGION: &str = "us-east-1";

/// What `--budget` asks for: a monthly limit and who hears about it.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRequest {
    /// US dollars a month.
    pub usd: f64,
    pub email: String,
}

impl BudgetRequest {
    /// Checks `--budget` and `--alert-email`; an error names the flag and what to write.
    pub fn new(amount: &str, email: Option<&str>) -> anyhow::Result<Self> {
        let usd = match amount.trim().trim_start_matches('$').parse::<f64>() {
            Ok(usd) if usd.is_finite() && usd > 0.0 && usd < 1e9 => usd,
            _ => anyhow::bail!(
                "--budget {amount:?}: give the monthly limit in US dollars, such as 500 (or none to remove the budget)"
            ),
        };
        let Some(email) = email else {
            anyhow::bail!(
                "--budget needs --alert-email ADDRESS: the address AWS Budgets writes to when the limit nears"
            );
        };
        let email = email.trim();
        let plausible = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
            })
            && !email.chars().any(|character| {
                character.is_whitespace() || character.is_control() || "<>,;\"".contains(character)
            });
        if !plausible {
            anyhow::bail!(
                "--alert-email {email:?}: give one e-mail address, such as ops@example.com"
            );
        }
        Ok(Self {
            usd,
            email: email.to_owned(),
        })
    }

    /// The limit as Budgets writes amounts.
    fn amount(&self) -> String {
        format!("{:.2}", self.usd)
    }
}

/// Costs of resources that carry the `skiff:workspace` tag, whatever its value: not (the tag is absent).
fn tagged_workspaces() -> Expression {
    let absent = TagValues::builder()
        .key(TAG_WORKSPACE)
        .match_options(MatchOption::Absent)
        .build();
    Expression::builder()
        .not(Expression::builder().tags(absent).build())
        .build()
}

/// The two alerts: spend past 80 %, and the forecast past 100 %.
fn notifications() -> Vec<Notification> {
    [
        (NotificationType::Actual, 80.0),
        (NotificationType::Forecasted, 100.0),
    ]
    .into_iter()
    .filter_map(|(kind, percent)| {
        Notification::builder()
            .notification_type(kind)
            .comparison_operator(ComparisonOperator::GreaterThan)
            .threshold(percent)
            .threshold_type(ThresholdType::Percentage)
            .build()
            .ok()
    })
    .collect()
}

fn subscriber(email: &str) -> anyhow::Result<Subscriber> {
    Subscriber::builder()
        .subscription_type(SubscriptionType::Email)
        .address(email)
        .build()
        .map_err(|error| anyhow::anyhow!("building the alert's subscriber: {error}"))
}

fn budget(request: &BudgetRequest) -> anyhow::Result<Budget> {
    Budget::builder()
        .budget_name(BUDGET_NAME)
        .budget_limit(
            Spend::builder()
                .amount(request.amount())
                .unit("USD")
                .build()
                .map_err(|error| anyhow::anyhow!("building the budget's limit: {error}"))?,
        )
        .time_unit(TimeUnit::Monthly)
        .budget_type(BudgetType::Cost)
        .filter_expression(tagged_workspaces())
        .build()
        .map_err(|error| anyhow::anyhow!("building the budget: {error}"))
}

impl Aws {
    fn budgets(&self) -> aws_sdk_budgets::Client {
        aws_sdk_budgets::Client::from_conf(
            aws_sdk_budgets::config::Builder::from(&self.sdk)
                .region(aws_config::Region::new(BUDGETS_REGION))
                .build(),
        )
    }

    /// Makes or updates the budget and its alerts (`Some`), or removes it (`None`); what was done, in lines.
    pub async fn write_budget(
        &self,
        request: Option<&BudgetRequest>,
    ) -> anyhow::Result<Vec<String>> {
        let caller = self.caller().await?;
        let budgets = self.budgets();
        let found = match budgets
            .describe_budget()
            .account_id(&caller.account)
            .budget_name(BUDGET_NAME)
            .send()
            .await
        {
            Ok(output) => output.budget,
            Err(error) if error_code(&error) == Some("NotFoundException") => None,
            Err(error) => {
                return Err(aws_error(
                    &format!(
                        "reading budget {BUDGET_NAME} (aws-setup --budget needs budgets:ViewBudget)"
                    ),
                    &error,
                ));
            }
        };
        let Some(request) = request else {
            if found.is_none() {
                return Ok(vec![format!(
                    "account {} had no budget {BUDGET_NAME}",
                    caller.account
                )]);
            }
            budgets
                .delete_budget()
                .account_id(&caller.account)
                .budget_name(BUDGET_NAME)
                .send()
                .await
                .map_err(|error| aws_error(&format!("deleting budget {BUDGET_NAME}"), &error))?;
            return Ok(vec![format!("removed budget {BUDGET_NAME} and its alerts")]);
        };
        let mut report = Vec::new();
        let subscriber = subscriber(&request.email)?;
        match found {
            None => {
                let mut create = budgets
                    .create_budget()
                    .account_id(&caller.account)
                    .budget(budget(request)?);
                for notification in notifications() {
                    create = create.notifications_with_subscribers(
                        NotificationWithSubscribers::builder()
                            .notification(notification)
                            .subscribers(subscriber.clone())
                            .build()
                            .map_err(|error| anyhow::anyhow!("building an alert: {error}"))?,
                    );
                }
                create.send().await.map_err(|error| {
                    aws_error(
                        &format!("creating budget {BUDGET_NAME} (aws-setup --budget needs budgets:ModifyBudget)"),
                        &error,
                    )
                })?;
                report.push(format!(
                    "made budget {BUDGET_NAME}: ${}/month for everything tagged {TAG_WORKSPACE}",
                    request.amount()
                ));
            }
            Some(existing) => {
                let wanted = budget(request)?;
                let same = existing.budget_limit == wanted.budget_limit
                    && existing.filter_expression == wanted.filter_expression
                    && existing.time_unit == wanted.time_unit;
                if !same {
                    budgets
                        .update_budget()
                        .account_id(&caller.account)
                        .new_budget(wanted)
                        .send()
                        .await
                        .map_err(|error| {
                            aws_error(&format!("updating budget {BUDGET_NAME}"), &error)
                        })?;
                }
                // The alerts are put back as this run says: the old ones go, the new ones come.
                let old = budgets
                    .describe_notifications_for_budget()
                    .account_id(&caller.account)
                    .budget_name(BUDGET_NAME)
                    .send()
                    .await
                    .map_err(|error| {
                        aws_error(
                            &format!("reading the alerts of budget {BUDGET_NAME}"),
                            &error,
                        )
                    })?;
                for notification in old.notifications.unwrap_or_default() {
                    budgets
                        .delete_notification()
                        .account_id(&caller.account)
                        .budget_name(BUDGET_NAME)
                        .notification(notification)
                        .send()
                        .await
                        .map_err(|error| {
                            aws_error(
                                &format!("replacing an alert of budget {BUDGET_NAME}"),
                                &error,
                            )
                        })?;
                }
                for notification in notifications() {
                    budgets
                        .create_notification()
                        .account_id(&caller.account)
                        .budget_name(BUDGET_NAME)
                        .notification(notification)
                        .subscribers(subscriber.clone())
                        .send()
                        .await
                        .map_err(|error| {
                            aws_error(&format!("adding an alert to budget {BUDGET_NAME}"), &error)
                        })?;
                }
                report.push(format!(
                    "{} budget {BUDGET_NAME}: ${}/month for everything tagged {TAG_WORKSPACE}",
                    if same { "found" } else { "updated" },
                    request.amount()
                ));
            }
        }
        report.push(format!(
            "alerts to {}: spend past 80% of it, and the month's forecast past 100%",
            request.email
        ));
        report.push(format!(
            "AWS Budgets counts a tag once it is a cost allocation tag: activate {TAG_WORKSPACE} under Billing, Cost allocation tags, if it is not yet"
        ));
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_flags_are_checked_by_name() {
        let request = BudgetRequest::new("$500", Some("ops@example.com")).unwrap();
        assert_eq!(request.amount(), "500.00");
        for (amount, email, named) in [
            ("lots", Some("ops@example.com"), "--budget"),
            ("-5", Some("ops@example.com"), "--budget"),
            ("0", Some("ops@example.com"), "--budget"),
            ("500", None, "--alert-email"),
            ("500", Some("ops"), "--alert-email"),
            ("500", Some("a@b.com, evil@c.com"), "--alert-email"),
            ("500", Some("a@b.com\nBcc: x@y.z"), "--alert-email"),
        ] {
            let error = BudgetRequest::new(amount, email).unwrap_err().to_string();
            assert!(error.contains(named), "{amount} {email:?}: {error}");
        }
    }
}

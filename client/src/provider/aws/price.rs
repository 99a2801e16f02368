//! What a workspace costs, from AWS itself: the instance type's hourly on-demand price and gp3 storage's monthly
//! price per GiB from the Price List Query API (`GetProducts`), the current spot price from EC2's
//! `DescribeSpotPriceHistory`. The list prices are cached on the laptop for a day (`prices.json` under
//! `$SKIFF_HOME`); a price that cannot be had is said and left out, never guessed, and never stops a command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_pricing::types::{Filter, FilterType};

use super::Aws;

/// How long a list price read from AWS is used before it is read again.
pub const CACHE_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// The Price List Query API answers in these regions only; skiff asks the first.
const PRICING_REGION: &str = "us-east-1";

/// The prices of one workspace's instance and disk, each `None` when AWS did not give it (with why in `missing`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Quote {
    pub region: String,
    pub instance_type: String,
    /// USD per hour, on demand.
    pub on_demand_hourly: Option<f64>,
    /// USD per hour, the current spot price (the highest across the region's zones), when asked for.
    pub spot_hourly: Option<f64>,
    /// USD per GiB-month of gp3.
    pub gp3_gib_month: Option<f64>,
    /// Why a price is missing, for the warning.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl Quote {
    /// The line `up` prints before it launches.
    pub fn describe(&self, volume_gib: i32, spot: bool) -> String {
        let hourly = match (spot, self.spot_hourly, self.on_demand_hourly) {
            (true, Some(spot), Some(on_demand)) => {
                format!("${spot:.4}/hour spot now (${on_demand:.4}/hour on demand)")
            }
            (true, Some(spot), None) => format!("${spot:.4}/hour spot now"),
            (_, _, Some(on_demand)) => format!("${on_demand:.4}/hour on demand"),
            (_, _, None) => "no hourly price".to_owned(),
        };
        let storage = self.gp3_gib_month.map_or_else(
            || format!("{volume_gib} GiB gp3: no storage price"),
            |price| {
                format!(
                    "{volume_gib} GiB gp3 ${:.2}/month while it exists",
                    price * f64::from(volume_gib)
                )
            },
        );
        let mut line = format!(
            "{} in {}: {hourly}; {storage}",
            self.instance_type, self.region
        );
        if !self.missing.is_empty() {
            line.push_str(&format!(" (going on without: {})", self.missing.join("; ")));
        }
        line
    }

    /// What a `gib` GiB gp3 volume that exists since `since` has cost this month at `now` (seconds since the epoch):
    /// its monthly price for the part of the month it existed, as AWS prorates storage.
    pub fn storage_this_month(&self, gib: i32, since: i64, now: i64) -> Option<f64> {
        Some(storage_so_far(self.gp3_gib_month?, gib, since, now))
    }

    /// The hourly price a workspace pays: spot's for a spot instance, when known, else on demand.
    pub fn hourly(&self, spot: bool) -> Option<f64> {
        if spot {
            self.spot_hourly.or(self.on_demand_hourly)
        } else {
            self.on_demand_hourly
        }
    }
}

/// What a `gib` GiB volume at `gib_month_usd` per GiB-month, existing since `since`, has cost this month at `now`.
pub fn storage_so_far(gib_month_usd: f64, gib: i32, since: i64, now: i64) -> f64 {
    let start = skiff::calendar::month_start(now);
    let month = skiff::calendar::next_month_start(now) - start;
    let existed = (now - since.max(start)).max(0);
    gib_month_usd * f64::from(gib) * existed as f64 / month as f64
}

/// Prices read from AWS, by `region/what`, with when they were read (seconds since the epoch).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Cache {
    prices: BTreeMap<String, (f64, i64)>,
}

fn cache_path() -> Option<PathBuf> {
    crate::workspace::Store::open_default()
        .ok()
        .map(|store| store.root().join("prices.json"))
}

fn read_cache(path: &Path) -> Cache {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

impl Cache {
    fn fresh(&self, key: &str, now: i64) -> Option<f64> {
        self.prices.get(key).and_then(|(price, read)| {
            let age = now.saturating_sub(*read);
            (0..i64::try_from(CACHE_FOR.as_secs()).unwrap_or(i64::MAX))
                .contains(&age)
                .then_some(*price)
        })
    }
}

/// gp3's monthly price per GiB in `region` from the laptop's cache, when read within the last day; asks no one.
pub fn cached_gp3(region: &str) -> Option<f64> {
    cached(&format!("{region}/gp3"))
}

/// `instance_type`'s hourly on-demand price in `region` from the laptop's cache, when read within the last day; asks
/// no one.
pub fn cached_on_demand(region: &str, instance_type: &str) -> Option<f64> {
    cached(&format!("{region}/{instance_type}"))
}

fn cached(key: &str) -> Option<f64> {
    let cache = cache_path().as_deref().map(read_cache)?;
    cache.fresh(key, skiff::calendar::now_unix())
}

/// How long `up` and `status` wait for prices before going on without them (a proxy that swallows the Price List
/// endpoint must not hold a launch).
pub const QUOTE_TIMEOUT: Duration = Duration::from_secs(10);

impl Aws {
    /// [`Aws::quote`], or a quote without prices that says why when AWS does not answer within [`QUOTE_TIMEOUT`].
    pub async fn quote_in_time(&self, instance_type: &str, spot: bool) -> Quote {
        match tokio::time::timeout(QUOTE_TIMEOUT, self.quote(instance_type, spot)).await {
            Ok(quote) => quote,
            Err(_) => Quote {
                region: self.region.clone(),
                instance_type: instance_type.to_owned(),
                missing: vec![format!(
                    "the prices: no answer within {} s",
                    QUOTE_TIMEOUT.as_secs()
                )],
                ..Quote::default()
            },
        }
    }

    /// The prices of `instance_type` and its gp3 disk in this region (and the current spot price with `spot`), from
    /// the laptop's cache while a day old at most, else from AWS.
    pub async fn quote(&self, instance_type: &str, spot: bool) -> Quote {
        let mut quote = Quote {
            region: self.region.clone(),
            instance_type: instance_type.to_owned(),
            ..Quote::default()
        };
        let path = cache_path();
        let mut cache = path.as_deref().map(read_cache).unwrap_or_default();
        let now = skiff::calendar::now_unix();
        let mut changed = false;
        let pricing = aws_sdk_pricing::Client::from_conf(
            aws_sdk_pricing::config::Builder::from(&self.sdk)
                .region(aws_config::Region::new(PRICING_REGION))
                .build(),
        );
        let instance_key = format!("{}/{instance_type}", self.region);
        quote.on_demand_hourly = match cache.fresh(&instance_key, now) {
            Some(price) => Some(price),
            None => match on_demand_hourly(&pricing, &self.region, instance_type).await {
                Ok(price) => {
                    cache.prices.insert(instance_key, (price, now));
                    changed = true;
                    Some(price)
                }
                Err(error) => {
                    quote
                        .missing
                        .push(format!("the on-demand price: {error:#}"));
                    None
                }
            },
        };
        let storage_key = format!("{}/gp3", self.region);
        quote.gp3_gib_month = match cache.fresh(&storage_key, now) {
            Some(price) => Some(price),
            None => match gp3_gib_month(&pricing, &self.region).await {
                Ok(price) => {
                    cache.prices.insert(storage_key, (price, now));
                    changed = true;
                    Some(price)
                }
                Err(error) => {
                    quote.missing.push(format!("the gp3 price: {error:#}"));
                    None
                }
            },
        };
        if spot {
            match self.spot_hourly(instance_type).await {
                Ok(price) => quote.spot_hourly = Some(price),
                Err(error) => quote.missing.push(format!("the spot price: {error:#}")),
            }
        }
        if changed
            && let Some(path) = &path
            && let Ok(bytes) = serde_json::to_vec_pretty(&cache)
            && let Err(error) = skiff::atomic::write(path, &bytes, 0o600)
        {
            tracing::debug!("saving the price cache {}: {error}", path.display());
        }
        quote
    }

    /// The current spot price of `instance_type` for Linux: the highest across the region's zones, since the zone
    /// is chosen later.
    async fn spot_hourly(&self, instance_type: &str) -> anyhow::Result<f64> {
        let output = self
            .ec2
            .describe_spot_price_history()
            .instance_types(aws_sdk_ec2::types::InstanceType::from(instance_type))
            .product_descriptions("Linux/UNIX")
            .start_time(aws_sdk_ec2::primitives::DateTime::from(
                std::time::SystemTime::now(),
            ))
            .send()
            .await
            .map_err(|error| super::aws_error("DescribeSpotPriceHistory", &error))?;
        output
            .spot_price_history
            .unwrap_or_default()
            .iter()
            .filter_map(|price| price.spot_price.as_deref()?.parse::<f64>().ok())
            .filter(|price| price.is_finite() && *price >= 0.0)
            .reduce(f64::max)
            .ok_or_else(|| anyhow::anyhow!("EC2 has no spot price for {instance_type} here"))
    }
}

fn term(field: &str, value: &str) -> Filter {
    Filter::builder()
        .r#type(FilterType::TermMatch)
        .field(field)
        .value(value)
        .build()
        .expect("a filter with its type, field and value")
}

/// Asks `GetProducts` for `filters` of Amazon EC2 and reads the one on-demand price in `unit` of what it answers.
async fn list_price(
    pricing: &aws_sdk_pricing::Client,
    filters: Vec<Filter>,
    unit: &str,
) -> anyhow::Result<f64> {
    let output = pricing
        .get_products()
        .service_code("AmazonEC2")
        .format_version("aws_v1")
        .set_filters(Some(filters))
        .max_results(10)
        .send()
        .await
        .map_err(|error| super::aws_error("the Price List API's GetProducts", &error))?;
    let products = output.price_list.unwrap_or_default();
    let prices: Vec<f64> = products
        .iter()
        .filter_map(|product| on_demand_price(product, unit))
        .collect();
    match prices.as_slice() {
        [] => anyhow::bail!("the Price List API has no such product"),
        [price, ..] => Ok(*price),
    }
}

async fn on_demand_hourly(
    pricing: &aws_sdk_pricing::Client,
    region: &str,
    instance_type: &str,
) -> anyhow::Result<f64> {
    list_price(
        pricing,
        vec![
            term("instanceType", instance_type),
            term("regionCode", region),
            term("operatingSystem", "Linux"),
            term("tenancy", "Shared"),
            term("preInstalledSw", "NA"),
            term("capacitystatus", "Used"),
        ],
        "Hrs",
    )
    .await
}

async fn gp3_gib_month(pricing: &aws_sdk_pricing::Client, region: &str) -> anyhow::Result<f64> {
    list_price(
        pricing,
        vec![
            term("productFamily", "Storage"),
            term("volumeApiName", "gp3"),
            term("regionCode", region),
        ],
        "GB-Mo",
    )
    .await
}

/// The USD price per `unit` of one product document of `GetProducts` (`terms.OnDemand.*.priceDimensions.*`), when
/// it has exactly one such price. The document is data from the network: anything else in it is ignored.
pub fn on_demand_price(product: &str, unit: &str) -> Option<f64> {
    let document: serde_json::Value = serde_json::from_str(product).ok()?;
    let mut prices = document["terms"]["OnDemand"]
        .as_object()?
        .values()
        .filter_map(|term| term["priceDimensions"].as_object())
        .flat_map(|dimensions| dimensions.values())
        .filter(|dimension| dimension["unit"].as_str() == Some(unit))
        .filter_map(|dimension| {
            dimension["pricePerUnit"]["USD"]
                .as_str()?
                .parse::<f64>()
                .ok()
        })
        .filter(|price| price.is_finite() && *price >= 0.0);
    let price = prices.next()?;
    prices.next().is_none().then_some(price)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product as the Price List Query API's `GetProducts` returns it (the AWS Price List API reference, "Reading
    /// the price list file": `product`, `serviceCode`, `terms.OnDemand.<offerTermCode>.priceDimensions.<rateCode>`).
    fn product(unit: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {"productFamily": "Compute Instance", "attributes": {"instanceType": "t3.large"}, "sku": "ABC"},
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {"ABC.JRTCKXETXF": {
                "priceDimensions": {"ABC.JRTCKXETXF.6YS6EN2CT7": {
                    "unit": unit, "pricePerUnit": {"USD": usd}, "description": "$0.0832 per On Demand Linux t3.large Instance Hour"
                }},
                "sku": "ABC", "effectiveDate": "2026-11-01T00:00:00Z"
            }}}
        })
        .to_string()
    }

    #[test]
    fn the_on_demand_price_is_read_from_the_documented_shape_and_nothing_else() {
        assert_eq!(
            on_demand_price(&product("Hrs", "0.0832000000"), "Hrs"),
            Some(0.0832)
        );
        assert_eq!(
            on_demand_price(&product("GB-Mo", "0.08"), "Hrs"),
            None,
            "another unit"
        );
        assert_eq!(on_demand_price(&product("Hrs", "NaN"), "Hrs"), None);
        assert_eq!(on_demand_price(&product("Hrs", "-1"), "Hrs"), None);
        assert_eq!(
            on_demand_price(&product("Hrs", "$1; rm -rf /"), "Hrs"),
            None
        );
        assert_eq!(on_demand_price("not json", "Hrs"), None);
        assert_eq!(on_demand_price("{\"terms\": {}}", "Hrs"), None);
    }

    #[test]
    fn the_line_before_launching_names_each_price_or_why_it_is_missing() {
        let quote = Quote {
            region: "eu-west-1".into(),
            instance_type: "t3.xlarge".into(),
            on_demand_hourly: Some(0.1824),
            spot_hourly: Some(0.0611),
            gp3_gib_month: Some(0.088),
            missing: vec![],
        };
        assert_eq!(
            quote.describe(40, false),
            "t3.xlarge in eu-west-1: $0.1824/hour on demand; 40 GiB gp3 $3.52/month while it exists"
        );
        assert_eq!(
            quote.describe(40, true),
            "t3.xlarge in eu-west-1: $0.0611/hour spot now ($0.1824/hour on demand); 40 GiB gp3 $3.52/month while it exists"
        );
        let missing = Quote {
            on_demand_hourly: None,
            gp3_gib_month: None,
            spot_hourly: None,
            missing: vec!["the on-demand price: AccessDenied".into()],
            ..quote
        };
        assert_eq!(
            missing.describe(8, false),
            "t3.xlarge in eu-west-1: no hourly price; 8 GiB gp3: no storage price (going on without: the on-demand price: AccessDenied)"
        );
    }

    /// Storage is prorated over the month's seconds: a 40 GiB disk at $0.08/GiB-month that existed all of
    /// December's first week has cost a quarter of its month less a day's worth; one made today only today's.
    #[test]
    fn storage_is_priced_for_the_part_of_the_month_the_disk_existed() {
        let quote = Quote {
            gp3_gib_month: Some(0.08),
            ..Quote::default()
        };
        let december_1 = 1_796_083_200;
        let now = december_1 + 7 * 86_400;
        let week = quote
            .storage_this_month(40, december_1 - 86_400 * 40, now)
            .unwrap();
        assert!((week - 3.2 * 7.0 / 31.0).abs() < 1e-9, "{week}");
        let today = quote.storage_this_month(40, now - 3_600, now).unwrap();
        assert!((today - 3.2 / (31.0 * 24.0)).abs() < 1e-9, "{today}");
        assert_eq!(
            Quote::default().storage_this_month(40, december_1, now),
            None,
            "no price, no figure"
        );
    }

    #[test]
    fn a_cached_price_is_used_for_a_day() {
        let mut cache = Cache::default();
        cache
            .prices
            .insert("eu-west-1/t3.large".into(), (0.0832, 1_000));
        assert_eq!(
            cache.fresh("eu-west-1/t3.large", 1_000 + 3_600),
            Some(0.0832)
        );
        assert_eq!(cache.fresh("eu-west-1/t3.large", 1_000 + 86_400), None);
        assert_eq!(
            cache.fresh("eu-west-1/t3.large", 500),
            None,
            "from the future"
        );
        assert_eq!(cache.fresh("eu-west-1/m6i.large", 1_000), None);
    }
}

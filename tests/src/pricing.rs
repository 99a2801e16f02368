//! A stand-in for the AWS Price List Query API, which moto does not model: `GetProducts` over the AWS JSON 1.1
//! protocol (`POST /`, `X-Amz-Target: AWSPriceListService.GetProducts`), answering from a small table of products
//! in the response shape of the API reference (`FormatVersion`, `PriceList` as JSON strings, each a product with
//! `product.attributes` and `terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD`). Filters are
//! `TERM_MATCH` on a product's attributes (and `productFamily`), all of which must match. It counts the calls it
//! answered; a client that points `AWS_ENDPOINT_URL_PRICING` at it asks it instead of AWS.

use std::io::{BufRead as _, Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// One product the stand-in sells: its family, its attributes, and its on-demand price per `unit`.
#[derive(Debug, Clone)]
pub struct Product {
    pub family: &'static str,
    pub attributes: Vec<(&'static str, &'static str)>,
    pub unit: &'static str,
    pub usd: &'static str,
}

/// Linux on-demand instances, as the EC2 product family lists them.
pub fn instance(region: &'static str, instance_type: &'static str, usd: &'static str) -> Product {
    Product {
        family: "Compute Instance",
        attributes: vec![
            ("instanceType", instance_type),
            ("regionCode", region),
            ("operatingSystem", "Linux"),
            ("tenancy", "Shared"),
            ("preInstalledSw", "NA"),
            ("capacitystatus", "Used"),
        ],
        unit: "Hrs",
        usd,
    }
}

/// gp3 storage in `region`, per GB-month.
pub fn gp3(region: &'static str, usd: &'static str) -> Product {
    Product {
        family: "Storage",
        attributes: vec![("volumeApiName", "gp3"), ("regionCode", region)],
        unit: "GB-Mo",
        usd,
    }
}

fn document(product: &Product, index: usize) -> String {
    let sku = format!("SKU{index:04}");
    let mut attributes = serde_json::Map::new();
    for (key, value) in &product.attributes {
        attributes.insert((*key).to_owned(), json!(value));
    }
    json!({
        "product": {"productFamily": product.family, "attributes": attributes, "sku": sku},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {format!("{sku}.JRTCKXETXF"): {
            "priceDimensions": {format!("{sku}.JRTCKXETXF.6YS6EN2CT7"): {
                "unit": product.unit,
                "pricePerUnit": {"USD": product.usd},
                "description": "stand-in price"
            }},
            "sku": sku,
            "effectiveDate": "2026-11-01T00:00:00Z"
        }}},
        "version": "20261101000000",
        "publicationDate": "2026-11-01T00:00:00Z"
    })
    .to_string()
}

fn matches(product: &Product, filters: &[Value]) -> bool {
    filters.iter().all(|filter| {
        let (Some(field), Some(value)) = (filter["Field"].as_str(), filter["Value"].as_str())
        else {
            return false;
        };
        filter["Type"] == "TERM_MATCH"
            && if field == "productFamily" {
                product.family == value
            } else {
                product
                    .attributes
                    .iter()
                    .any(|(key, attribute)| *key == field && *attribute == value)
            }
    })
}

/// The answer to one request's body: a `GetProducts` response, or the error the API gives.
fn answer(products: &[Product], target: Option<&str>, body: &[u8]) -> (u16, Value) {
    if target != Some("AWSPriceListService.GetProducts") {
        return (
            400,
            json!({"__type": "UnknownOperationException", "message": format!("unknown operation {target:?}")}),
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return (
            400,
            json!({"__type": "InvalidParameterException", "message": "the body is not JSON"}),
        );
    };
    if request["ServiceCode"] != "AmazonEC2" {
        return (200, json!({"FormatVersion": "aws_v1", "PriceList": []}));
    }
    let filters = request["Filters"].as_array().cloned().unwrap_or_default();
    let list: Vec<String> = products
        .iter()
        .enumerate()
        .filter(|(_, product)| matches(product, &filters))
        .map(|(index, product)| document(product, index))
        .collect();
    (200, json!({"FormatVersion": "aws_v1", "PriceList": list}))
}

/// The stand-in, serving on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct PriceList {
    calls: Arc<AtomicUsize>,
    server: crate::http::LoopbackServer,
}

impl PriceList {
    /// Serves `products`.
    pub fn start(products: Vec<Product>) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let server = crate::http::LoopbackServer::start("the Price List stand-in", move |stream| {
            let mut reader = std::io::BufReader::new(stream);
            let (mut length, mut target) = (0usize, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("x-amz-target:") {
                    target = line
                        .split_once(':')
                        .map(|(_, value)| value.trim().to_owned());
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let (status, response) = answer(&products, target.as_deref(), &body);
            if status == 200 {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            let text = response.to_string();
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} {}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: stand-in\r\nConnection: close\r\n\r\n{text}",
                if status == 200 { "OK" } else { "Bad Request" },
                text.len()
            );
        });
        Self { calls, server }
    }

    /// The endpoint for `AWS_ENDPOINT_URL_PRICING`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// How many `GetProducts` calls it answered.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_term_matches_that_must_all_hold() {
        let products = vec![
            instance("eu-west-1", "t3.large", "0.0912"),
            gp3("eu-west-1", "0.088"),
        ];
        let body = json!({"ServiceCode": "AmazonEC2", "Filters": [
            {"Type": "TERM_MATCH", "Field": "instanceType", "Value": "t3.large"},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "eu-west-1"}
        ]});
        let (status, response) = answer(
            &products,
            Some("AWSPriceListService.GetProducts"),
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 200);
        assert_eq!(response["PriceList"].as_array().unwrap().len(), 1);
        let other_region = json!({"ServiceCode": "AmazonEC2", "Filters": [
            {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "Storage"},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"}
        ]});
        let (_, response) = answer(
            &products,
            Some("AWSPriceListService.GetProducts"),
            other_region.to_string().as_bytes(),
        );
        assert_eq!(response["PriceList"], json!([]));
        let (status, _) = answer(
            &products,
            Some("AWSPriceListService.DescribeServices"),
            b"{}",
        );
        assert_eq!(status, 400);
    }
}

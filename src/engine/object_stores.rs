//! Object stores for external tables on `s3://`, `gs://`, `az://` (`abfs://`, `azure://`)
//! and `http(s)://` locations.
//!
//! A store is built from the location's scheme and bucket (or host) with credentials and
//! settings from the environment, the way each cloud's own tools read them
//! (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`, ...), and registered with the session before the table
//! is planned. Local paths need nothing.

use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::ObjectStore;
use url::Url;

use super::error::{EngineError, Result};

/// Register the object store `location` needs, if it is a URL with a remote scheme.
pub fn register_for(ctx: &SessionContext, location: &str) -> Result<()> {
    let Ok(url) = Url::parse(location) else {
        return Ok(()); // a local path
    };
    let Some(store) = store_for(&url)? else {
        return Ok(());
    };
    let root = Url::parse(&format!("{}://{}", url.scheme(), url.authority()))
        .map_err(|e| EngineError::NotSupported(format!("location {location}: {e}")))?;
    ctx.runtime_env().register_object_store(&root, store);
    Ok(())
}

fn store_for(url: &Url) -> Result<Option<Arc<dyn ObjectStore>>> {
    let bucket = url.host_str().unwrap_or_default();
    let bad = |e: object_store::Error| EngineError::NotSupported(format!("location {url}: {e}"));
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(
            AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(bad)?,
        ),
        "gs" | "gcs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(bad)?,
        ),
        "az" | "azure" | "abfs" | "abfss" => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(bad)?,
        ),
        "http" | "https" => {
            let root = format!("{}://{}", url.scheme(), url.authority());
            let options =
                object_store::ClientOptions::new().with_allow_http(url.scheme() == "http");
            Arc::new(
                HttpBuilder::new()
                    .with_url(root)
                    .with_client_options(options)
                    .build()
                    .map_err(bad)?,
            )
        }
        "file" => return Ok(None),
        other => {
            return Err(EngineError::NotSupported(format!(
            "location scheme \"{other}://\" (use a local path, s3://, gs://, az:// or http(s)://)"
        )))
        }
    };
    Ok(Some(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_need_no_store() {
        let ctx = SessionContext::new();
        register_for(&ctx, "/data/crm.csv").expect("local");
        register_for(&ctx, "relative/dir/").expect("relative");
    }

    #[test]
    fn remote_schemes_register_a_store() {
        let ctx = SessionContext::new();
        register_for(&ctx, "http://127.0.0.1:9/data/crm.csv").expect("http");
        let url = Url::parse("http://127.0.0.1:9/").expect("url");
        assert!(ctx
            .runtime_env()
            .object_store(
                datafusion::execution::object_store::ObjectStoreUrl::parse(url).expect("store url")
            )
            .is_ok());
        std::env::set_var("AWS_REGION", "eu-west-1");
        register_for(&ctx, "s3://bucket/key.parquet").expect("s3 builds without network");
        let err = register_for(&ctx, "ftp://host/x.csv").expect_err("unknown scheme");
        assert!(err.to_string().contains("ftp"), "{err}");
    }
}

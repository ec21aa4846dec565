//! Catalog and DDL over gRPC.

use super::table_name;
use crate::error::ServerError;
use crate::meta::paging::PageRequest;
use crate::meta::{detached, Meta};
use meridian_model::DefinitionChange;
use meridian_proto as pb;
use meridian_proto::convert::{column_from_wire, definition_from_wire, rule_from_wire};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The catalog service.
pub struct CatalogSvc {
    meta: Arc<Meta>,
}

impl CatalogSvc {
    /// A service over `meta`.
    pub fn new(meta: Arc<Meta>) -> Self {
        Self { meta }
    }
}

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogSvc {
    async fn create_schema(
        &self,
        request: Request<pb::CreateSchemaRequest>,
    ) -> Result<Response<pb::CreateSchemaResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?;
        let created = detached(async move {
            cluster
                .create_schema(&r.catalog, &r.schema, r.if_not_exists)
                .await
        })
        .await?;
        Ok(Response::new(pb::CreateSchemaResponse { created }))
    }

    async fn list_schemas(
        &self,
        request: Request<pb::ListSchemasRequest>,
    ) -> Result<Response<pb::ListSchemasResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?;
        let req = PageRequest::new(r.page_size.into(), &r.page_token, &r.name_prefix)?;
        let page = cluster.list_schemas_page(&r.catalog, &req)?;
        Ok(Response::new(pb::ListSchemasResponse {
            schemas: page.items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn create_table(
        &self,
        request: Request<pb::CreateTableRequest>,
    ) -> Result<Response<pb::CreateTableResponse>, Status> {
        let r = request.into_inner();
        let name = table_name(&r.catalog, &r.schema, &r.table)?;
        let cluster = self.meta.cluster(&r.cluster)?;
        let definition = definition_from_wire(r.definition).map_err(ServerError::from)?;
        let (table, created) = cluster
            .create_table_with(
                name,
                rule_from_wire(r.partition_rule),
                definition,
                r.if_not_exists,
            )
            .await?;
        Ok(Response::new(pb::CreateTableResponse {
            table: Some((&table).into()),
            created,
        }))
    }

    async fn drop_table(
        &self,
        request: Request<pb::DropTableRequest>,
    ) -> Result<Response<pb::DropTableResponse>, Status> {
        let r = request.into_inner();
        let name = table_name(&r.catalog, &r.schema, &r.table)?;
        let cluster = self.meta.cluster(&r.cluster)?;
        let dropped = detached(async move { cluster.drop_table(&name, r.if_exists).await }).await?;
        Ok(Response::new(pb::DropTableResponse { dropped }))
    }

    async fn rename_table(
        &self,
        request: Request<pb::RenameTableRequest>,
    ) -> Result<Response<pb::RenameTableResponse>, Status> {
        let r = request.into_inner();
        let name = table_name(&r.catalog, &r.schema, &r.table)?;
        let cluster = self.meta.cluster(&r.cluster)?;
        let table = detached(async move { cluster.rename_table(&name, &r.new_name).await }).await?;
        Ok(Response::new(pb::RenameTableResponse {
            table: Some((&table).into()),
        }))
    }

    async fn get_table(
        &self,
        request: Request<pb::GetTableRequest>,
    ) -> Result<Response<pb::GetTableResponse>, Status> {
        let r = request.into_inner();
        let name = table_name(&r.catalog, &r.schema, &r.table)?;
        let cluster = self.meta.cluster(&r.cluster)?;
        let table = cluster
            .get_table(&name)
            .ok_or_else(|| Status::not_found(format!("table {name} not found")))?;
        Ok(Response::new(pb::GetTableResponse {
            table: Some((&table).into()),
        }))
    }

    async fn drop_schema(
        &self,
        request: Request<pb::DropSchemaRequest>,
    ) -> Result<Response<pb::DropSchemaResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?;
        let dropped = detached(async move {
            cluster
                .drop_schema(&r.catalog, &r.schema, r.cascade, r.if_exists)
                .await
        })
        .await?;
        Ok(Response::new(pb::DropSchemaResponse { dropped }))
    }

    async fn drop_catalog(
        &self,
        request: Request<pb::DropCatalogRequest>,
    ) -> Result<Response<pb::DropCatalogResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?;
        let dropped = detached(async move {
            cluster
                .drop_catalog(&r.catalog, r.cascade, r.if_exists)
                .await
        })
        .await?;
        Ok(Response::new(pb::DropCatalogResponse { dropped }))
    }

    async fn alter_table(
        &self,
        request: Request<pb::AlterTableRequest>,
    ) -> Result<Response<pb::AlterTableResponse>, Status> {
        use pb::alter_table_request::Change;
        let r = request.into_inner();
        let name = table_name(&r.catalog, &r.schema, &r.table)?;
        let change = match r.change {
            Some(Change::AddColumn(c)) => {
                DefinitionChange::AddColumn(column_from_wire(c).map_err(ServerError::from)?)
            }
            Some(Change::DropColumn(c)) => DefinitionChange::DropColumn(c),
            Some(Change::SetOptions(o)) => DefinitionChange::SetOptions(
                o.set
                    .into_iter()
                    .map(|(k, v)| (k, Some(v)))
                    .chain(o.unset.into_iter().map(|k| (k, None)))
                    .collect(),
            ),
            None => {
                return Err(Status::invalid_argument(
                    "an alter needs a change: add_column, drop_column or set_options",
                ))
            }
        };
        let cluster = self.meta.cluster(&r.cluster)?;
        let table = detached(async move { cluster.alter_table(&name, change).await }).await?;
        Ok(Response::new(pb::AlterTableResponse {
            table: Some((&table).into()),
        }))
    }

    async fn list_tables(
        &self,
        request: Request<pb::ListTablesRequest>,
    ) -> Result<Response<pb::ListTablesResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?;
        let req = PageRequest::new(r.page_size.into(), &r.page_token, &r.name_prefix)?;
        let page = cluster.list_tables_page(&r.catalog, &r.schema, &req)?;
        Ok(Response::new(pb::ListTablesResponse {
            tables: page.items.iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

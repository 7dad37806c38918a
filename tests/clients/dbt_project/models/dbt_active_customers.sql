{{ config(materialized='view') }}

select id, name, country, spend
from {{ ref('dbt_stg_customers') }}
where active

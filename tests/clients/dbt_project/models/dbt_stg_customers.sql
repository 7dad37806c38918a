{{ config(materialized='view') }}

select
    id,
    lower(name) as name,
    upper(country) as country,
    active,
    spend
from {{ source('raw', 'dbt_src_customers') }}

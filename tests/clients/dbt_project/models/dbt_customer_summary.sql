{{ config(materialized='table') }}

select
    country,
    count(*) as customers,
    sum(spend) as total_spend
from {{ ref('dbt_active_customers') }}
group by country

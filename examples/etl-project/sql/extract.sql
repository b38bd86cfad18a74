select id, amount from orders where day = current_date;

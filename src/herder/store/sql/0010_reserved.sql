-- Reserved for another branch of issue 22 (its migration of this number replaces this file).
SELECT 1;
